//! Retention: raw messages and attachments are deleted `retention` after arrival (their links then
//! answer 410), records `keep_metadata` after. Messages with a pending delivery are never touched:
//! retention must not lose mail that has not reached its endpoint yet.

use rusqlite::params;

use super::Sqlite;

/// Work per statement, so the janitor never holds the write lock for long.
const BATCH: i64 = 500;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub files: usize,
    pub records: usize,
    /// Old enough, but kept because a delivery is still pending.
    pub kept_pending: usize,
}

const OLD_AND_SETTLED: &str = "received_at < ?1 AND NOT EXISTS
    (SELECT 1 FROM deliveries d WHERE d.message_id = messages.id AND d.status = 'pending')";

impl Sqlite {
    /// Deletes the files of messages received before `cutoff_ms`.
    pub fn purge_files(&self, cutoff_ms: i64) -> anyhow::Result<usize> {
        self.purge_files_with(cutoff_ms, &mut |_| {})
    }

    /// `purge_files`, telling `progress` the running total after each batch.
    pub fn purge_files_with(&self, cutoff_ms: i64, progress: &mut dyn FnMut(usize)) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let ids: Vec<String> = {
                let conn = self.conn();
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT id FROM messages WHERE files_removed_at IS NULL AND {OLD_AND_SETTLED} LIMIT ?2"
                ))?;
                stmt.query_map(params![cutoff_ms, BATCH], |r| r.get(0))?.collect::<Result<_, _>>()?
            };
            if ids.is_empty() {
                return Ok(total);
            }
            // The bytes and the mark in one transaction (a large message's files just before it:
            // a crash in between leaves a mark missing, never a dangling link).
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            for id in &ids {
                super::contents::remove(self, &tx, id)?;
                tx.execute(
                    "UPDATE messages SET files_removed_at = ?2 WHERE id = ?1",
                    params![id, crate::time::now_ms()],
                )?;
            }
            tx.commit()?;
            total += ids.len();
            progress(total);
        }
    }

    /// Deletes the records (and any files left) of messages received before `cutoff_ms`.
    pub fn purge_records(&self, cutoff_ms: i64) -> anyhow::Result<usize> {
        self.purge_records_with(cutoff_ms, &mut |_| {})
    }

    /// `purge_records`, telling `progress` the running total after each batch.
    pub fn purge_records_with(&self, cutoff_ms: i64, progress: &mut dyn FnMut(usize)) -> anyhow::Result<usize> {
        self.purge_files(cutoff_ms)?;
        let mut total = 0;
        loop {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let ids: Vec<String> = {
                let mut stmt =
                    tx.prepare_cached(&format!("SELECT id FROM messages WHERE {OLD_AND_SETTLED} LIMIT ?2"))?;
                stmt.query_map(params![cutoff_ms, BATCH], |r| r.get(0))?.collect::<Result<_, _>>()?
            };
            if ids.is_empty() {
                return Ok(total);
            }
            for id in &ids {
                super::ingest::delete_message_rows(&tx, id)?;
            }
            tx.commit()?;
            total += ids.len();
            progress(total);
        }
    }

    /// Messages older than `cutoff_ms` kept only because a delivery is pending.
    pub fn pending_before(&self, cutoff_ms: i64) -> anyhow::Result<usize> {
        let conn = self.conn();
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM messages WHERE received_at < ?1 AND EXISTS
               (SELECT 1 FROM deliveries d WHERE d.message_id = messages.id AND d.status = 'pending')",
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
}
