//! Where a message's bytes live in PostgreSQL: the `contents` table, in chunks of `CHUNK`, written
//! in the message's own transaction (so a 250 never points at missing bytes, and any gateway serves
//! any link). Retention deletes the rows; the record stays, marked `files_removed_at`.

use super::Postgres;
use crate::store::Content;

/// The `contents.part` of the raw message; attachments use their index.
pub(super) const RAW: i32 = -1;
/// The largest chunk: a 50 MB message is 200 rows, none of them a large value to hold whole.
const CHUNK: usize = 256 * 1024;

/// Writes each part in chunks, in the caller's transaction.
pub(super) fn insert(
    tx: &mut postgres::Transaction<'_>,
    message_id: &str,
    parts: &[(i32, &[u8])],
) -> anyhow::Result<()> {
    let stmt = tx.prepare("INSERT INTO contents (message_id, part, chunk, data) VALUES ($1, $2, $3, $4)")?;
    for (part, data) in parts {
        // An empty part still has its one (empty) chunk: present, zero bytes.
        let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(CHUNK).collect() };
        for (i, chunk) in chunks.into_iter().enumerate() {
            tx.execute(&stmt, &[&message_id, part, &(i as i32), &chunk])?;
        }
    }
    Ok(())
}

impl Postgres {
    /// The raw message (`attachment` None) or one decoded attachment, as stored.
    pub(in crate::store) fn content(&self, message_id: &str, attachment: Option<usize>) -> anyhow::Result<Content> {
        let mut conn = self.conn()?;
        let mut tx = conn.build_transaction().read_only(true).start()?;
        let removed =
            tx.query_opt("SELECT files_removed_at IS NOT NULL FROM messages WHERE id = $1", &[&message_id])?;
        match removed.map(|r| r.get::<_, bool>(0)) {
            None => return Ok(Content::Missing),
            Some(true) => return Ok(Content::Removed),
            Some(false) => {}
        }
        let part = attachment.map_or(RAW, |i| i as i32);
        let rows = tx.query(
            "SELECT data FROM contents WHERE message_id = $1 AND part = $2 ORDER BY chunk",
            &[&message_id, &part],
        )?;
        tx.commit()?;
        if rows.is_empty() {
            return Ok(Content::Missing);
        }
        let mut bytes = Vec::new();
        for r in rows {
            bytes.extend_from_slice(r.get::<_, &[u8]>(0));
        }
        Ok(Content::Bytes(bytes))
    }

    /// The raw message's bytes, in memory (the CLI, the forward relay).
    pub(in crate::store) fn raw(&self, message_id: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self.content(message_id, None)? {
            Content::Missing | Content::Removed | Content::File(_) => Ok(None),
            Content::Bytes(b) => Ok(Some(b)),
        }
    }
}
