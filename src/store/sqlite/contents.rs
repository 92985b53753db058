//! Where a message's bytes live. A message up to `INLINE_MAX` keeps its raw bytes and decoded
//! attachments in the `contents` table, written in the same transaction as its record: a group
//! commit of many small messages is then one fsync of the WAL, with no file to create, sync and
//! name in a directory per message (that was most of the cost of a 250). A larger message keeps
//! files in `spool/` and `attachments/` (see spool.rs), written and fsync'd before its transaction,
//! so big bodies never pass through the WAL and are streamed from disk when downloaded. The
//! rows are compressed (codec.rs); files are kept as received, so a download streams them as is.

use std::path::PathBuf;

use rusqlite::{OptionalExtension, params};

use super::codec::{self, Codec};
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
pub(super) const RAW: i64 = -1;

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

/// One `contents` row to insert: its part, how it is stored, the stored bytes.
pub(super) struct Part {
    part: i64,
    codec: Codec,
    data: Vec<u8>,
}

/// The rows a small message's bytes take: the raw message, then each attachment by index, each
/// compressed (codec.rs).
pub(super) fn rows<'a>(raw: &'a [u8], attachments: impl Iterator<Item = &'a [u8]>) -> anyhow::Result<Vec<Part>> {
    std::iter::once((RAW, raw))
        .chain(attachments.enumerate().map(|(i, b)| (i as i64, b)))
        .map(|(part, bytes)| Ok(Part { part, codec: Codec::Zstd, data: codec::compress(bytes, None)? }))
        .collect()
}

pub(super) fn insert(tx: &rusqlite::Connection, message_id: &str, rows: &[Part]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached("INSERT INTO contents (message_id, part, data, codec) VALUES (?1, ?2, ?3, ?4)")?;
    for p in rows {
        stmt.execute(params![message_id, p.part, p.data, p.codec as i64])?;
    }
    Ok(())
}

/// Deletes a message's bytes, wherever they are. Rows in the caller's transaction; files best
/// effort (an orphan file is harmless, a link to a missing one answers 410).
pub(super) fn remove(store: &Sqlite, tx: &rusqlite::Connection, message_id: &str) -> rusqlite::Result<()> {
    detach_event(tx, message_id)?;
    tx.prepare_cached("DELETE FROM contents WHERE message_id = ?1")?.execute([message_id])?;
    spool::discard(&store.spool_dir, &store.attachment_dir, message_id);
    Ok(())
}

/// An event compressed with its raw message as dictionary (codec.rs) is compressed again on its
/// own before the raw message goes: its record outlives the bytes (retention keeps it longer).
fn detach_event(tx: &rusqlite::Connection, message_id: &str) -> rusqlite::Result<()> {
    let stored: Option<(Vec<u8>, Vec<u8>)> = tx
        .prepare_cached(
            "SELECT m.event_message, c.data FROM messages m JOIN contents c ON c.message_id = m.id AND c.part = ?2
             WHERE m.id = ?1 AND m.event_codec = ?3",
        )?
        .query_row(params![message_id, RAW, Codec::ZstdAfterRaw as i64], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((event, raw)) = stored else { return Ok(()) };
    let alone = codec::decompress(&raw, None)
        .and_then(|raw| codec::decompress(&event, Some(&raw)))
        .and_then(|json| codec::compress(&json, None))
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    tx.prepare_cached("UPDATE messages SET event_message = ?2, event_codec = ?3 WHERE id = ?1")?.execute(params![
        message_id,
        alone,
        Codec::Zstd as i64
    ])?;
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
        let inline: Option<(Vec<u8>, i64)> = conn
            .prepare_cached("SELECT data, codec FROM contents WHERE message_id = ?1 AND part = ?2")?
            .query_row(params![message_id, part], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        // Decompressed once the delivery side's connection is free again.
        drop(conn);
        Ok(match (inline, attachment) {
            (Some((stored, n)), _) => {
                let codec =
                    Codec::from_column(n).ok_or_else(|| anyhow::anyhow!("contents of {message_id}: codec {n}"))?;
                Content::Bytes(codec::decode(codec, stored, None)?)
            }
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
    use super::{Content, INLINE_MAX, Placement};
    use crate::store::sqlite::tests::message;
    use crate::store::sqlite::{NewAttachment, Sqlite};

    #[test]
    fn up_to_inline_max_in_the_database_larger_in_the_spool_nothing_when_not_kept() {
        assert_eq!(Placement::of(true, 0), Placement::Inline);
        assert_eq!(Placement::of(true, INLINE_MAX), Placement::Inline);
        assert_eq!(Placement::of(true, INLINE_MAX + 1), Placement::Spooled);
        assert_eq!(Placement::of(false, INLINE_MAX + 1), Placement::RecordOnly);
        assert_eq!(Placement::of(false, 10), Placement::RecordOnly);
    }

    /// (stored bytes of the raw message's row, its codec, the event's stored length and codec)
    fn stored(store: &Sqlite, id: &str) -> (Option<(i64, i64)>, (i64, i64)) {
        let conn = store.conn();
        let raw = conn
            .query_row("SELECT length(data), codec FROM contents WHERE message_id = ?1 AND part = -1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .ok();
        let event = conn
            .query_row("SELECT length(event_message), event_codec FROM messages WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        (raw, event)
    }

    #[test]
    fn small_messages_are_kept_compressed_large_ones_as_files_and_every_reader_gets_the_bytes_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path()).unwrap();
        let text = "A line of a message body that people would write, more or less.\r\n".repeat(60);
        let small = format!("Subject: small\r\nFrom: a@b.test\r\n\r\n{text}");
        let event = serde_json::json!({"subject": "small", "text": text}).to_string();
        let att = [NewAttachment {
            filename: Some("a.bin"),
            content_type: "application/octet-stream",
            sha256: "s",
            bytes: &[7u8; 3000],
        }];
        let mut m = message("msg_small", 1_000, &att, &[]);
        (m.raw, m.event_message) = (small.as_bytes(), &event);
        store.ingest(&m).unwrap();
        let (raw, ev) = stored(&store, "msg_small");
        let (raw_len, raw_codec) = raw.expect("a small message's bytes are a row");
        assert_eq!(raw_codec, 1);
        assert!((raw_len as usize) < small.len() / 4, "{raw_len} of {}", small.len());
        assert_eq!(ev.1, 2, "the event is compressed after its raw message");
        assert!(
            (ev.0 as usize) < event.len() / 10,
            "an event that repeats its raw message: {} of {}",
            ev.0,
            event.len()
        );
        assert_eq!(store.raw("msg_small").unwrap().as_deref(), Some(small.as_bytes()));
        assert!(matches!(store.content("msg_small", Some(0)).unwrap(), Content::Bytes(b) if b == [7u8; 3000]));
        assert_eq!(store.message("msg_small").unwrap().unwrap().event_message, event);

        let large: Vec<u8> = small.bytes().cycle().take(INLINE_MAX + 1).collect();
        let big_part = vec![9u8; 5000];
        let att = [NewAttachment { filename: None, content_type: "text/plain", sha256: "s", bytes: &big_part }];
        let mut m = message("msg_large", 1_000, &att, &[]);
        (m.raw, m.event_message) = (&large, &event);
        store.ingest(&m).unwrap();
        let (raw, ev) = stored(&store, "msg_large");
        assert!(raw.is_none(), "a large message is a file");
        assert_eq!(ev.1, 1, "its event is compressed alone");
        assert!(
            matches!(store.content("msg_large", None).unwrap(), Content::File(p) if std::fs::read(&p).unwrap() == large)
        );
        assert!(
            matches!(store.content("msg_large", Some(0)).unwrap(), Content::File(p) if std::fs::read(&p).unwrap() == big_part)
        );
        assert_eq!(store.raw("msg_large").unwrap().as_deref(), Some(&large[..]));
        assert_eq!(store.message("msg_large").unwrap().unwrap().event_message, event);

        let mut m = message("msg_dropped", 1_000, &[], &[]);
        (m.keep_files, m.event_message) = (false, &event);
        store.ingest(&m).unwrap();
        assert_eq!(stored(&store, "msg_dropped").1.1, 1);
        assert!(matches!(store.content("msg_dropped", None).unwrap(), Content::Removed));
        assert_eq!(store.message("msg_dropped").unwrap().unwrap().event_message, event);
        let listed = store.messages(10, None).unwrap();
        assert!(listed.iter().all(|r| r.event_message == event), "the list reads every codec");
    }
}
