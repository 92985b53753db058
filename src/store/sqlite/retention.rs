//! Retention: raw messages and attachments are deleted `retention` after arrival (their links then
//! answer 410), records `keep_metadata` after. Messages with a pending delivery are never touched:
//! retention must not lose mail that has not reached its endpoint yet.

use rusqlite::params;

use super::Sqlite;

/// Messages per transaction at most (a few thousand rows with their deliveries, attempts and bytes),
/// and a transaction commits early once it has held the write lock for `CHUNK_TIME`: the lock is
/// then let go (`pause_writes`), so a purge of millions never holds up a 250 for longer than about
/// that, however slow the disk or busy the machine.
const CHUNK: usize = 500;
const CHUNK_TIME: std::time::Duration = std::time::Duration::from_millis(20);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub files: usize,
    pub records: usize,
    /// Old enough, but kept because a delivery is still pending.
    pub kept_pending: usize,
}

/// A message id, and whether it may go (no pending delivery).
const SETTLED: &str =
    "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = messages.id AND d.status = 'pending')";

impl Sqlite {
    /// Deletes the files of messages received before `cutoff_ms`.
    pub fn purge_files(&self, cutoff_ms: i64) -> anyhow::Result<usize> {
        self.purge_files_with(cutoff_ms, &mut |_| {})
    }

    /// `purge_files`, telling `progress` the running total after each chunk.
    pub fn purge_files_with(&self, cutoff_ms: i64, progress: &mut dyn FnMut(usize)) -> anyhow::Result<usize> {
        self.purge_files_in(cutoff_ms, CHUNK, progress)
    }

    /// Walks the messages that still have their files (`messages_files`, oldest first) from where
    /// the previous chunk stopped: each row is read once, whether it goes or is kept (pending).
    fn purge_files_in(&self, cutoff_ms: i64, chunk: usize, progress: &mut dyn FnMut(usize)) -> anyhow::Result<usize> {
        let mut total = 0;
        let mut from = (i64::MIN, String::new());
        loop {
            let started = std::time::Instant::now();
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let rows: Vec<(i64, String, bool)> = {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT received_at, id, {SETTLED} FROM messages INDEXED BY messages_files
                     WHERE files_removed_at IS NULL AND received_at < ?1 AND (received_at, id) > (?2, ?3)
                     ORDER BY received_at, id LIMIT ?4"
                ))?;
                stmt.query_map(params![cutoff_ms, from.0, from.1, chunk as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<_, _>>()?
            };
            if rows.is_empty() {
                return Ok(total);
            }
            // The bytes and the mark in one transaction (a large message's files just before it:
            // a crash in between leaves a mark missing, never a dangling link).
            let now = crate::time::now_ms();
            let mut removed = 0;
            for (at, id, settled) in &rows {
                if *settled {
                    super::contents::remove(self, &tx, id)?;
                    tx.execute("UPDATE messages SET files_removed_at = ?2 WHERE id = ?1", params![id, now])?;
                    removed += 1;
                }
                from = (*at, id.clone());
                if started.elapsed() >= CHUNK_TIME {
                    break;
                }
            }
            tx.commit()?;
            drop(conn);
            if removed > 0 {
                total += removed;
                progress(total);
            }
            super::pause_writes(started.elapsed());
        }
    }

    /// Deletes the records (and any files left) of messages received before `cutoff_ms`.
    pub fn purge_records(&self, cutoff_ms: i64) -> anyhow::Result<usize> {
        self.purge_records_with(cutoff_ms, &mut |_| {})
    }

    /// `purge_records`, telling `progress` the running total after each chunk.
    pub fn purge_records_with(&self, cutoff_ms: i64, progress: &mut dyn FnMut(usize)) -> anyhow::Result<usize> {
        self.purge_records_in(cutoff_ms, CHUNK, progress)
    }

    /// As `purge_files_in`, over every message before the cutoff (`messages_received`).
    fn purge_records_in(&self, cutoff_ms: i64, chunk: usize, progress: &mut dyn FnMut(usize)) -> anyhow::Result<usize> {
        self.purge_files_in(cutoff_ms, chunk, &mut |_| {})?;
        let mut total = 0;
        let mut from = (i64::MIN, String::new());
        loop {
            let started = std::time::Instant::now();
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let rows: Vec<(i64, String, bool)> = {
                let mut stmt = tx.prepare_cached(&format!(
                    "SELECT received_at, id, {SETTLED} FROM messages
                     WHERE received_at < ?1 AND (received_at, id) > (?2, ?3) ORDER BY received_at, id LIMIT ?4"
                ))?;
                stmt.query_map(params![cutoff_ms, from.0, from.1, chunk as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<_, _>>()?
            };
            if rows.is_empty() {
                return Ok(total);
            }
            let mut removed = 0;
            for (at, id, settled) in &rows {
                if *settled {
                    super::ingest::delete_message_rows(&tx, id)?;
                    removed += 1;
                }
                from = (*at, id.clone());
                if started.elapsed() >= CHUNK_TIME {
                    break;
                }
            }
            tx.commit()?;
            drop(conn);
            if removed > 0 {
                total += removed;
                progress(total);
            }
            super::pause_writes(started.elapsed());
        }
    }

    /// Messages older than `cutoff_ms` kept only because a delivery is pending: read off the pending
    /// deliveries (`deliveries_status`; a delivery's created_at is its message's received_at), not
    /// off every old message.
    pub fn pending_before(&self, cutoff_ms: i64) -> anyhow::Result<usize> {
        let conn = self.conn();
        let n: i64 = conn.query_row(
            "SELECT COUNT(DISTINCT message_id) FROM deliveries INDEXED BY deliveries_status
             WHERE status = 'pending' AND created_at < ?1",
            [cutoff_ms],
            |r| r.get(0),
        )?;
        Ok(n as usize)
    }

    /// One janitor pass: files past `retention_ms`, records past `keep_metadata_ms`.
    pub fn apply_retention(&self, now_ms: i64, retention_ms: i64, keep_metadata_ms: i64) -> anyhow::Result<Purged> {
        let files = self.purge_files(now_ms - retention_ms)?;
        let records = self.purge_records(now_ms - keep_metadata_ms)?;
        Ok(Purged { files, records, kept_pending: self.pending_before(now_ms - retention_ms)? })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::sqlite::{Content, Sqlite};

    fn add(store: &Sqlite, id: &str, received_at: i64) {
        crate::store::sqlite::tests::add(store, id, received_at, &["app"]);
    }

    #[test]
    fn old_settled_messages_lose_files_then_records_pending_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path()).unwrap();
        add(&store, "msg_old", 1_000);
        add(&store, "msg_pending", 1_000);
        add(&store, "msg_new", 50_000);
        for d in store.deliveries(None, None).unwrap() {
            if d.message_id != "msg_pending" {
                store.conn().execute("UPDATE deliveries SET status = 'succeeded' WHERE id = ?1", [&d.id]).unwrap();
            }
        }
        let p = store.apply_retention(60_000, 20_000, 1_000_000).unwrap();
        assert_eq!(p, super::Purged { files: 1, records: 0, kept_pending: 1 });
        assert!(matches!(store.content("msg_old", None).unwrap(), Content::Removed));
        assert!(matches!(store.content("msg_old", Some(0)).unwrap(), Content::Removed));
        let rows: i64 = store
            .conn()
            .query_row("SELECT COUNT(*) FROM contents WHERE message_id = 'msg_old'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0, "the bytes of a purged message leave the database");
        for id in ["msg_pending", "msg_new"] {
            assert_eq!(store.raw(id).unwrap().as_deref(), Some(&b"Subject: x\r\n\r\nhi\r\n"[..]), "{id}");
            assert!(matches!(store.content(id, Some(0)).unwrap(), Content::Bytes(b) if b == b"hi"), "{id}");
        }

        let p = store.apply_retention(60_000, 20_000, 30_000).unwrap();
        assert_eq!(p.records, 1);
        assert!(matches!(store.content("msg_old", None).unwrap(), Content::Missing));
        assert!(store.message("msg_pending").unwrap().is_some());
        assert_eq!(store.deliveries(None, Some("msg_old")).unwrap().len(), 0);
    }

    #[test]
    fn a_purge_commits_chunk_by_chunk_and_lets_other_writers_in_between() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path()).unwrap();
        for i in 0..25 {
            add(&store, &format!("msg_{i:02}"), 1_000 + i);
        }
        add(&store, "msg_pending", 2_000);
        store
            .conn()
            .execute("UPDATE deliveries SET status = 'succeeded' WHERE message_id <> 'msg_pending'", [])
            .unwrap();
        // Another connection, as `mxhook` commands and other processes have.
        let other = rusqlite::Connection::open(dir.path().join("mxhook.db")).unwrap();
        let count = |sql: &str| -> i64 { other.query_row(sql, [], |r| r.get(0)).unwrap() };

        let mut seen = Vec::new();
        let mut i = 0;
        let purged = store
            .purge_records_in(10_000, 10, &mut |total| {
                // Between two chunks: what went is committed (another connection sees it), and the
                // write lock is free (a new message is stored meanwhile).
                seen.push((total, count("SELECT COUNT(*) FROM messages WHERE received_at < 10000")));
                add(&store, &format!("msg_new{i}"), 50_000);
                i += 1;
            })
            .unwrap();
        assert_eq!(purged, 25);
        // At most 10 a transaction (fewer when one runs past CHUNK_TIME on a slow machine), each
        // committed before the next begins: another connection sees the rest, and the pending one.
        assert!(seen.len() >= 3, "{seen:?}");
        let mut before = 0;
        for &(total, left) in &seen {
            assert!(total > before && total - before <= 10, "{seen:?}");
            assert_eq!(left, 26 - total as i64, "{seen:?}");
            before = total;
        }
        assert_eq!(before, 25);
        assert!(store.message("msg_pending").unwrap().is_some(), "a pending message is kept");
        assert_eq!(count("SELECT COUNT(*) FROM messages WHERE received_at = 50000"), seen.len() as i64);
        let kept = 1 + seen.len() as i64;
        assert_eq!(count("SELECT COUNT(*) FROM contents"), 2 * kept, "no bytes left of the purged ones");
    }
}
