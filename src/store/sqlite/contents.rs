//! Where a message's bytes live. A message up to `INLINE_MAX` keeps its raw bytes and decoded
//! attachments in the `contents` table, written in the same transaction as its record: a group
//! commit of many small messages is then one fsync of the WAL, with no file to create, sync and
//! name in a directory per message (that was most of the cost of a 250). A larger message keeps
//! files in `spool/` and `attachments/` (see spool.rs), written and fsync'd before its transaction,
//! so big bodies never pass through the WAL and are streamed from disk when downloaded.

use std::path::PathBuf;

use rusqlite::{OptionalExtension, params};

use super::{Sqlite, spool};

/// The largest raw message kept in the database.
const INLINE_MAX: usize = 1 << 20;

/// Where a new message's bytes go. Decided here only, by `Placement::of`: ingest writes a
/// `Spooled` message's files before its transaction, its row carries `Inline` bytes, and the
/// group commit syncs the spool directory for `Spooled` ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placement {
    /// Nothing is kept (every route dropped the message): the record only.
    RecordOnly,
    /// In the `contents` table, in the message's own transaction (up to `INLINE_MAX`).
    Inline,
    /// Files in `spool/` and `attachments/`, fsync'd before the message's transaction.
    Spooled,
}

impl Placement {
    /// `keep_files`: false when only the record is kept; `size`: the raw message's length.
    pub(super) fn of(keep_files: bool, size: usize) -> Placement {
        if !keep_files {
            Placement::RecordOnly
        } else if size <= INLINE_MAX {
            Placement::Inline
        } else {
            Placement::Spooled
        }
    }
}

/// The `contents.part` of the raw message; attachments use their index.
const RAW: i64 = -1;

/// What a link or the CLI finds for a message's raw bytes or one of its attachments.
pub enum Content {
    /// No such message.
    Missing,
    /// Retention removed the bytes; the record is kept.
    Removed,
    Bytes(Vec<u8>),
    File(PathBuf),
    /// Read piece by piece from the database (PostgreSQL's chunks).
    Reader(crate::store::ContentReader),
}

/// The rows a small message's bytes take: the raw message, then each attachment by index.
pub(super) fn rows<'a>(raw: &'a [u8], attachments: impl Iterator<Item = &'a [u8]>) -> Vec<(i64, Vec<u8>)> {
    std::iter::once((RAW, raw.to_vec())).chain(attachments.enumerate().map(|(i, b)| (i as i64, b.to_vec()))).collect()
}

pub(super) fn insert(tx: &rusqlite::Connection, message_id: &str, rows: &[(i64, Vec<u8>)]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached("INSERT INTO contents (message_id, part, data) VALUES (?1, ?2, ?3)")?;
    for (part, data) in rows {
        stmt.execute(params![message_id, part, data])?;
    }
    Ok(())
}

/// Deletes a message's bytes, wherever they are. Rows in the caller's transaction; files best
/// effort (an orphan file is harmless, a link to a missing one answers 410).
pub(super) fn remove(store: &Sqlite, tx: &rusqlite::Connection, message_id: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM contents WHERE message_id = ?1")?.execute([message_id])?;
    spool::discard(&store.spool_dir, &store.attachment_dir, message_id);
    Ok(())
}

impl Sqlite {
    /// The raw message (`attachment` None) or one decoded attachment, as stored.
    pub fn content(&self, message_id: &str, attachment: Option<usize>) -> anyhow::Result<Content> {
        let conn = self.deliver_conn();
        let removed: Option<bool> = conn
            .prepare_cached("SELECT files_removed_at IS NOT NULL FROM messages WHERE id = ?1")?
            .query_row([message_id], |r| r.get(0))
            .optional()?;
        match removed {
            None => return Ok(Content::Missing),
            Some(true) => return Ok(Content::Removed),
            Some(false) => {}
        }
        let part = attachment.map_or(RAW, |i| i as i64);
        let inline: Option<Vec<u8>> = conn
            .prepare_cached("SELECT data FROM contents WHERE message_id = ?1 AND part = ?2")?
            .query_row(params![message_id, part], |r| r.get(0))
            .optional()?;
        Ok(match (inline, attachment) {
            (Some(bytes), _) => Content::Bytes(bytes),
            (None, None) => Content::File(spool::path(&self.spool_dir, message_id)),
            (None, Some(i)) => Content::File(spool::attachment_path(&self.attachment_dir, message_id, i)),
        })
    }

    /// The raw message's bytes, read into memory (the CLI, the forward relay). None: the message
    /// does not exist or retention removed its bytes.
    pub fn raw(&self, message_id: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self.content(message_id, None)? {
            Content::Missing | Content::Removed => Ok(None),
            Content::Bytes(b) => Ok(Some(b)),
            Content::Reader(r) => Ok(Some(r.into_bytes()?)),
            Content::File(path) => {
                let bytes = std::fs::read(&path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                Ok(Some(bytes))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{INLINE_MAX, Placement};

    #[test]
    fn up_to_inline_max_in_the_database_larger_in_the_spool_nothing_when_not_kept() {
        assert_eq!(Placement::of(true, 0), Placement::Inline);
        assert_eq!(Placement::of(true, INLINE_MAX), Placement::Inline);
        assert_eq!(Placement::of(true, INLINE_MAX + 1), Placement::Spooled);
        assert_eq!(Placement::of(false, INLINE_MAX + 1), Placement::RecordOnly);
        assert_eq!(Placement::of(false, 10), Placement::RecordOnly);
    }
}
