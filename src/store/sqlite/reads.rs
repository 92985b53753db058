//! The reads behind the CLI and HTTP: messages, deliveries, attempts, an attachment's record, the
//! queue's counts and the health probe. The row types and their readers are here (queue.rs claims
//! with `delivery_row` too).

use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, params};

use super::codec::{self, Codec};
use super::{Attempt, Sqlite};
use crate::mail::{DeliveryStatus, EventType};

#[derive(Debug, Clone)]
pub struct AttachmentRow {
    pub filename: Option<String>,
    pub content_type: String,
    pub size: i64,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub message_id: String,
    pub event_id: String,
    pub endpoint: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub step: i64,
    /// Set when the CLI asked for this attempt (retry/replay); such an attempt uses no step of the schedule.
    pub retry_requested_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct MessageRow {
    pub id: String,
    pub received_at: i64,
    pub client_ip: String,
    pub helo: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub size: i64,
    pub sha256: String,
    pub subject: Option<String>,
    pub from_addr: Option<String>,
    pub parsed_status: String,
    pub event_message: String,
    /// The event has `raw.base64`, which `event_message` leaves out (see `mail::EventJson`).
    pub raw_inline: bool,
    /// What the message is, as its events say (`type`).
    pub event_type: EventType,
    /// `queued` (has deliveries), `stored` (kept, nothing sent; `stored: <why>` when its routes
    /// wanted it sent but no endpoint subscribes to its type) or `dropped` (record only).
    pub disposition: String,
}

pub(super) const DELIVERY_COLS: &str = "id, message_id, event_id, endpoint, status, attempts, step, retry_requested_at, next_attempt_at, last_status, last_error, created_at";
/// A message's columns for `message_row` (callers add `disposition` last). The stored event comes
/// with what decoding it needs: its codec, and the raw message when that is its dictionary.
pub(super) const MESSAGE_COLS: &str = "id, received_at, client_ip, helo, mail_from, rcpt_to, size, sha256, subject, from_addr, parsed_status, event_message, raw_inline, type, event_codec, CASE event_codec WHEN 2 THEN (SELECT data FROM contents WHERE contents.message_id = messages.id AND contents.part = -1) END";

impl Sqlite {
    /// An attachment's record, for its link: a read, so a download never waits for a group commit.
    pub fn attachment(&self, message_id: &str, index: usize) -> anyhow::Result<Option<AttachmentRow>> {
        let conn = self.deliver_conn();
        Ok(conn
            .query_row(
                "SELECT filename, content_type, size FROM attachments WHERE message_id = ?1 AND idx = ?2",
                params![message_id, index as i64],
                |r| Ok(AttachmentRow { filename: r.get(0)?, content_type: r.get(1)?, size: r.get(2)? }),
            )
            .optional()?)
    }

    /// Every attachment of a message, in index order (the zip link).
    pub fn attachments(&self, message_id: &str) -> anyhow::Result<Vec<AttachmentRow>> {
        let conn = self.deliver_conn();
        let mut stmt = conn.prepare_cached(
            "SELECT filename, content_type, size FROM attachments WHERE message_id = ?1 ORDER BY idx",
        )?;
        let rows = stmt.query_map([message_id], |r| {
            Ok(AttachmentRow { filename: r.get(0)?, content_type: r.get(1)?, size: r.get(2)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn deliveries(
        &self,
        status: Option<DeliveryStatus>,
        message_id: Option<&str>,
    ) -> anyhow::Result<Vec<Delivery>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR message_id = ?2) ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map(params![status.map(DeliveryStatus::as_str), message_id], delivery_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn delivery(&self, id: &str) -> anyhow::Result<Option<Delivery>> {
        let conn = self.conn();
        let sql = format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE id = ?1");
        Ok(conn.query_row(&sql, [id], delivery_row).optional()?)
    }

    pub fn attempts(&self, delivery_id: &str) -> anyhow::Result<Vec<Attempt>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT attempt, started_at, duration_ms, http_status, error, response_body
             FROM attempts WHERE delivery_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([delivery_id], |r| {
            Ok(Attempt {
                attempt: r.get(0)?,
                started_at: r.get(1)?,
                duration_ms: r.get(2)?,
                http_status: r.get(3)?,
                error: r.get(4)?,
                response_body: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest `limit` messages, of one type when `kind` says so.
    pub fn messages(&self, limit: usize, kind: Option<EventType>) -> anyhow::Result<Vec<MessageRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {MESSAGE_COLS}, disposition FROM messages WHERE (?2 IS NULL OR type = ?2)
             ORDER BY received_at DESC, id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map(params![limit as i64, kind.map(EventType::as_str)], message_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn message(&self, id: &str) -> anyhow::Result<Option<MessageRow>> {
        let conn = self.deliver_conn();
        let sql = format!("SELECT {MESSAGE_COLS}, disposition FROM messages WHERE id = ?1");
        Ok(conn.prepare_cached(&sql)?.query_row([id], message_row).optional()?)
    }

    /// Pending deliveries and when the oldest of them was created. A read on the delivery side's connection, off `deliveries_status` alone: with a backlog of a
    /// million, counting still reads its index entries, but holds up no group commit (no 250) while
    /// it does.
    pub fn queue_stats(&self) -> anyhow::Result<(i64, Option<i64>)> {
        let conn = self.deliver_conn();
        let count = conn.query_row(
            "SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_status WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )?;
        let oldest = conn.query_row(
            "SELECT MIN(created_at) FROM deliveries INDEXED BY deliveries_status WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )?;
        Ok((count, oldest))
    }

    /// True when the store takes durable writes: a probe file in the spool is written and fsync'd,
    /// and a transaction commits. On its own short-lived connection with a short busy timeout, so
    /// a locked database answers a health probe in about a second and holds up nothing else.
    pub fn writable(&self) -> bool {
        let probe = self.spool_dir.join(".health");
        let file_ok = std::fs::File::create(&probe)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"ok").and_then(|_| f.sync_all()))
            .and_then(|_| std::fs::remove_file(&probe))
            .is_ok();
        let db_ok = || -> rusqlite::Result<()> {
            let conn = Connection::open(&self.db_path)?;
            conn.busy_timeout(Duration::from_secs(1))?;
            conn.execute_batch(
                "BEGIN IMMEDIATE;
                 CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY, at INTEGER);
                 INSERT OR REPLACE INTO health (id, at) VALUES (1, unixepoch());
                 COMMIT;",
            )
        };
        file_ok && db_ok().is_ok()
    }
}

/// A `deliveries.status` column (the schema's CHECK allows only these words).
fn status_of(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<DeliveryStatus> {
    let text: String = r.get(i)?;
    DeliveryStatus::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("delivery status `{text}`").into(),
        )
    })
}

/// A `messages.type` column.
fn type_of(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<EventType> {
    let text: String = r.get(i)?;
    EventType::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, format!("event type `{text}`").into())
    })
}

pub(super) fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        message_id: r.get(1)?,
        event_id: r.get(2)?,
        endpoint: r.get(3)?,
        status: status_of(r, 4)?,
        attempts: r.get(5)?,
        step: r.get(6)?,
        retry_requested_at: r.get(7)?,
        next_attempt_at: r.get(8)?,
        last_status: r.get(9)?,
        last_error: r.get(10)?,
        created_at: r.get(11)?,
    })
}

pub(super) fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    let rcpt: String = r.get(5)?;
    Ok(MessageRow {
        id: r.get(0)?,
        received_at: r.get(1)?,
        client_ip: r.get(2)?,
        helo: r.get(3)?,
        mail_from: r.get(4)?,
        rcpt_to: serde_json::from_str(&rcpt).unwrap_or_default(),
        size: r.get(6)?,
        sha256: r.get(7)?,
        subject: r.get(8)?,
        from_addr: r.get(9)?,
        parsed_status: r.get(10)?,
        event_message: stored_event(r, 11, 14, 15)?,
        raw_inline: r.get(12)?,
        event_type: type_of(r, 13)?,
        disposition: r.get(16)?,
    })
}

/// A stored event's JSON from its columns: `event_message` (JSON text in rows from before
/// compression, else a zstd frame), `event_codec`, and the raw message's stored bytes when the
/// codec says they are its dictionary (NULL otherwise).
pub(in crate::store) fn stored_event(
    r: &rusqlite::Row<'_>,
    stored: usize,
    codec: usize,
    raw: usize,
) -> rusqlite::Result<String> {
    let fail = |e: anyhow::Error| rusqlite::Error::FromSqlConversionFailure(stored, Type::Blob, e.into());
    let n: i64 = r.get(codec)?;
    let codec = Codec::from_column(n).ok_or_else(|| fail(anyhow::anyhow!("event codec {n}")))?;
    if codec == Codec::Plain {
        return r.get(stored);
    }
    // The raw message of an event compressed after it was stored with it, compressed (ingest.rs).
    let dictionary = match r.get_ref(raw)?.as_blob_or_null()? {
        Some(z) => Some(codec::decompress(z, None).map_err(fail)?),
        None => None,
    };
    let json = codec::decode(codec, r.get(stored)?, dictionary.as_deref()).map_err(fail)?;
    String::from_utf8(json).map_err(|e| fail(e.into()))
}
