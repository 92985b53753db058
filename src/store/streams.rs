//! The streams' logs (`stream_events`, written with their message in `ingest.rs`) and their named
//! consumers' places (`stream_consumers`). Readers wait on `streams_watch`: it moves after every
//! commit that added stream events in this process (another process's writes, such as a CLI
//! command's, are seen at the reader's next poll).

use rusqlite::{OptionalExtension, params};

use super::Store;
use crate::mail::EventType;

/// One event of a stream, as kept: its body is built from its message's stored event when read.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    pub cursor: i64,
    pub stream: String,
    pub event_id: String,
    pub message_id: String,
    pub event_type: EventType,
    pub created_at: i64,
}

impl Store {
    /// Moves after each commit that added stream events: wait on `changed()`, then read again.
    pub fn streams_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.streams_tip.subscribe()
    }

    pub(super) fn streams_changed(&self) {
        self.streams_tip.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Up to `limit` events of `stream` after `after`, oldest first; only `types` when given.
    pub fn stream_events(
        &self,
        stream: &str,
        after: i64,
        limit: usize,
        types: Option<&[EventType]>,
    ) -> anyhow::Result<Vec<StreamEvent>> {
        let conn = self.deliver_conn();
        let mut stmt = conn.prepare_cached(
            "SELECT s.cursor, s.stream, s.event_id, s.message_id, m.type, s.created_at
             FROM stream_events s JOIN messages m ON m.id = s.message_id
             WHERE s.stream = ?1 AND s.cursor > ?2 ORDER BY s.cursor LIMIT ?3",
        )?;
        let mut out = Vec::new();
        // A type filter reads past the events it skips, a page at a time, until `limit` match.
        let mut from = after;
        loop {
            let page: Vec<StreamEvent> = stmt
                .query_map(params![stream, from, limit as i64], |r| {
                    Ok(StreamEvent {
                        cursor: r.get(0)?,
                        stream: r.get(1)?,
                        event_id: r.get(2)?,
                        message_id: r.get(3)?,
                        event_type: EventType::parse(&r.get::<_, String>(4)?).unwrap_or(EventType::Received),
                        created_at: r.get(5)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let full = page.len() == limit;
            from = page.last().map_or(from, |e| e.cursor);
            out.extend(page.into_iter().filter(|e| types.is_none_or(|t| t.contains(&e.event_type))));
            if !full || out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
        }
    }

    /// The newest cursor of `stream` (0 when it has none): where `?from=now` starts.
    pub fn stream_last(&self, stream: &str) -> anyhow::Result<i64> {
        let conn = self.deliver_conn();
        let last: Option<i64> =
            conn.query_row("SELECT MAX(cursor) FROM stream_events WHERE stream = ?1", [stream], |r| r.get(0))?;
        Ok(last.unwrap_or(0))
    }

    /// A named consumer's acked cursor (None: it has never acked).
    pub fn consumer_acked(&self, stream: &str, name: &str) -> anyhow::Result<Option<i64>> {
        let conn = self.deliver_conn();
        Ok(conn
            .query_row("SELECT acked FROM stream_consumers WHERE stream = ?1 AND name = ?2", [stream, name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Records that `name` is done with every event of `stream` up to `cursor`. An ack never moves
    /// a consumer back (a late ack from an older connection is ignored).
    pub fn ack(&self, stream: &str, name: &str, cursor: i64) -> anyhow::Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO stream_consumers (stream, name, acked, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (stream, name) DO UPDATE SET acked = MAX(acked, excluded.acked), updated_at = excluded.updated_at",
            params![stream, name, cursor, crate::time::now_ms()],
        )?;
        Ok(conn.query_row(
            "SELECT acked FROM stream_consumers WHERE stream = ?1 AND name = ?2",
            [stream, name],
            |r| r.get(0),
        )?)
    }
}
