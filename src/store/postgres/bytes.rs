//! Where a message's bytes live in PostgreSQL: the `contents` table, in chunks of `CHUNK`, written
//! in the message's own transaction (so a 250 never points at missing bytes, and any gateway serves
//! any link). Retention deletes the rows; the record stays, marked `files_removed_at`. Read back a
//! chunk at a time (`ChunkReader`): serving a 50 MB message holds one chunk, never the message.

use std::io::{Read, Seek, SeekFrom, Write};

use super::{Pool, Postgres};
use crate::store::{Content, ContentReader};

/// The `contents.part` of the raw message; attachments use their index.
pub(in crate::store) const RAW: i32 = -1;
/// The largest chunk: a 50 MB message is 200 rows, none of them a large value to hold whole.
pub(in crate::store) const CHUNK: usize = 256 * 1024;

const INSERT: &str = "INSERT INTO contents (message_id, part, chunk, data) VALUES ($1, $2, $3, $4)";

/// Writes each part in chunks, in the caller's transaction.
pub(super) fn insert(
    tx: &mut postgres::Transaction<'_>,
    message_id: &str,
    parts: &[(i32, &[u8])],
) -> anyhow::Result<()> {
    let stmt = tx.prepare(INSERT)?;
    for (part, data) in parts {
        // An empty part still has its one (empty) chunk: present, zero bytes.
        let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(CHUNK).collect() };
        for (i, chunk) in chunks.into_iter().enumerate() {
            tx.execute(&stmt, &[&message_id, part, &(i as i32), &chunk])?;
        }
    }
    Ok(())
}

/// One part written as its bytes come (`io::Write`), a chunk at a time, in the caller's
/// transaction: `store copy` streams a spooled file through it without reading it whole.
pub(in crate::store) struct ChunkWriter<'a, 't> {
    tx: &'a mut postgres::Transaction<'t>,
    stmt: postgres::Statement,
    message_id: &'a str,
    part: i32,
    next: i32,
    buf: Vec<u8>,
    written: u64,
}

impl<'a, 't> ChunkWriter<'a, 't> {
    pub(in crate::store) fn new(
        tx: &'a mut postgres::Transaction<'t>,
        message_id: &'a str,
        part: i32,
    ) -> anyhow::Result<ChunkWriter<'a, 't>> {
        let stmt = tx.prepare(INSERT)?;
        Ok(ChunkWriter { tx, stmt, message_id, part, next: 0, buf: Vec::with_capacity(CHUNK), written: 0 })
    }

    fn write_chunk(&mut self) -> Result<(), postgres::Error> {
        let data = &self.buf[..];
        self.tx.execute(&self.stmt, &[&self.message_id, &self.part, &self.next, &data])?;
        self.written += self.buf.len() as u64;
        self.next += 1;
        self.buf.clear();
        Ok(())
    }

    /// Writes what is left (an empty part gets its one empty chunk); the part's length.
    pub(in crate::store) fn finish(mut self) -> anyhow::Result<u64> {
        if !self.buf.is_empty() || self.next == 0 {
            self.write_chunk()?;
        }
        Ok(self.written)
    }
}

impl Write for ChunkWriter<'_, '_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.write_chunk().map_err(std::io::Error::other)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // A partial chunk waits for more: chunks are full but the last.
        Ok(())
    }
}

/// One stored part, read a chunk at a time, each chunk with a connection from the pool for that
/// read only (a slow download does not hold a connection). Seekable, for `Range` requests.
pub(super) struct ChunkReader {
    pool: Pool,
    message_id: String,
    part: i32,
    /// Each chunk's number and the offset of its first byte, in order.
    starts: Vec<(i32, u64)>,
    len: u64,
    pos: u64,
    /// The chunk last read: its index in `starts`, and its bytes.
    current: Option<(usize, Vec<u8>)>,
}

impl ChunkReader {
    fn fetch(&mut self, index: usize) -> std::io::Result<()> {
        let (chunk, start) = self.starts[index];
        let end = self.starts.get(index + 1).map_or(self.len, |(_, s)| *s);
        let mut conn = self.pool.get().map_err(std::io::Error::other)?;
        let row = conn
            .query_opt(
                "SELECT data FROM contents WHERE message_id = $1 AND part = $2 AND chunk = $3",
                &[&self.message_id, &self.part, &chunk],
            )
            .map_err(std::io::Error::other)?;
        let data: Vec<u8> = match row {
            Some(r) => r.get(0),
            // Deleted (retention, `messages delete`) while being read: the download breaks.
            None => {
                return Err(std::io::Error::other(format!(
                    "{} part {}: removed while read",
                    self.message_id, self.part
                )));
            }
        };
        if data.len() as u64 != end - start {
            return Err(std::io::Error::other(format!("{} part {}: changed while read", self.message_id, self.part)));
        }
        self.current = Some((index, data));
        Ok(())
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let index = self.starts.partition_point(|(_, s)| *s <= self.pos) - 1;
        if self.current.as_ref().is_none_or(|(i, _)| *i != index) {
            self.fetch(index)?;
        }
        let Some((_, data)) = &self.current else { return Ok(0) };
        let from = (self.pos - self.starts[index].1) as usize;
        let n = buf.len().min(data.len() - from);
        buf[..n].copy_from_slice(&data[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ChunkReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

impl Postgres {
    /// The raw message (`attachment` None) or one decoded attachment, as a reader of its chunks.
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
        // octet_length reads a value's stored length, not the value.
        let rows = tx.query(
            "SELECT chunk, octet_length(data)::bigint FROM contents WHERE message_id = $1 AND part = $2 ORDER BY chunk",
            &[&message_id, &part],
        )?;
        tx.commit()?;
        if rows.is_empty() {
            return Ok(Content::Missing);
        }
        let mut starts = Vec::with_capacity(rows.len());
        let mut len = 0u64;
        for r in &rows {
            starts.push((r.get::<_, i32>(0), len));
            len += r.get::<_, i64>(1) as u64;
        }
        let reader = ChunkReader {
            pool: self.pool.clone(),
            message_id: message_id.to_string(),
            part,
            starts,
            len,
            pos: 0,
            current: None,
        };
        Ok(Content::Reader(ContentReader { len, reader: Box::new(reader) }))
    }

    /// The raw message's bytes, in memory (the CLI, the forward relay).
    pub(in crate::store) fn raw(&self, message_id: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self.content(message_id, None)? {
            Content::Missing | Content::Removed | Content::File(_) => Ok(None),
            Content::Bytes(b) => Ok(Some(b)),
            Content::Reader(r) => Ok(Some(r.into_bytes()?)),
        }
    }
}
