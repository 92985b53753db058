//! The streams' logs and named consumers' places, shared by every gateway: a reader on any gateway
//! follows the same cursors. Readers wait on `streams_watch`, which LISTEN (`listen.rs`) moves when
//! any gateway commits stream events.

use std::sync::atomic::Ordering;

use super::Postgres;
use crate::mail::EventType;
use crate::store::{StreamEvent, StreamItem, StreamPage};

/// Rows read per statement by `stream_read`, and events deleted per statement by retention.
const SCAN: i64 = 200;

fn event(r: &postgres::Row) -> StreamEvent {
    StreamEvent {
        cursor: r.get(0),
        stream: r.get(1),
        event_id: r.get(2),
        message_id: r.get(3),
        event_type: EventType::parse(r.get(4)).unwrap_or(EventType::Received),
        created_at: r.get(5),
    }
}

impl Postgres {
    pub(in crate::store) fn stream_events(
        &self,
        stream: &str,
        after: i64,
        limit: usize,
        types: Option<&[EventType]>,
    ) -> anyhow::Result<Vec<StreamEvent>> {
        let mut conn = self.conn()?;
        let mut out = Vec::new();
        let mut from = after;
        loop {
            let page: Vec<StreamEvent> = conn
                .query(
                    "SELECT s.cursor, s.stream, s.event_id, s.message_id, m.type, s.created_at
                     FROM stream_events s JOIN messages m ON m.id = s.message_id
                     WHERE s.stream = $1 AND s.cursor > $2 ORDER BY s.cursor LIMIT $3",
                    &[&stream, &from, &(limit as i64)],
                )?
                .iter()
                .map(event)
                .collect();
            let full = page.len() == limit;
            from = page.last().map_or(from, |e| e.cursor);
            out.extend(page.into_iter().filter(|e| types.is_none_or(|t| t.contains(&e.event_type))));
            if !full || out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
        }
    }

    pub(in crate::store) fn stream_read(
        &self,
        stream: &str,
        after: i64,
        limit: usize,
        types: Option<&[EventType]>,
    ) -> anyhow::Result<StreamPage> {
        let limit = limit.max(1);
        let mut found: Vec<(StreamEvent, String, bool)> = Vec::new();
        let mut next = after;
        let done = {
            let mut conn = self.conn()?;
            'scan: loop {
                let rows = conn.query(
                    "SELECT s.cursor, s.stream, s.event_id, s.message_id, m.type, s.created_at, m.event_message, m.raw_inline
                     FROM stream_events s JOIN messages m ON m.id = s.message_id
                     WHERE s.stream = $1 AND s.cursor > $2 ORDER BY s.cursor LIMIT $3",
                    &[&stream, &next, &SCAN],
                )?;
                for r in &rows {
                    let e = event(r);
                    if types.is_none_or(|t| t.contains(&e.event_type)) {
                        if found.len() == limit {
                            break 'scan false;
                        }
                        next = e.cursor;
                        found.push((e, r.get(6), r.get(7)));
                    } else {
                        next = e.cursor;
                    }
                }
                if (rows.len() as i64) < SCAN {
                    break true;
                }
            }
        };
        let mut items = Vec::with_capacity(found.len());
        for (event, stored, raw_inline) in found {
            let message_json = match raw_inline.then(|| self.raw(&event.message_id)).transpose()?.flatten() {
                Some(raw) => crate::mail::with_raw_base64(&stored, &raw).ok_or_else(|| {
                    anyhow::anyhow!("the stored event of {} does not end with raw.base64", event.message_id)
                })?,
                None => stored,
            };
            items.push(StreamItem { event, message_json });
        }
        Ok(StreamPage { items, next, done })
    }

    pub(in crate::store) fn purge_stream(&self, stream: &str, cutoff_ms: i64) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let n = self.conn()?.execute(
                "DELETE FROM stream_events WHERE cursor IN
                 (SELECT cursor FROM stream_events WHERE stream = $1 AND created_at < $2 ORDER BY cursor LIMIT $3)",
                &[&stream, &cutoff_ms, &SCAN],
            )? as usize;
            total += n;
            if n < SCAN as usize {
                return Ok(total);
            }
        }
    }

    /// LISTEN wakes readers at once; this once-a-second look is the fallback for a notification lost
    /// while the LISTEN connection was down.
    pub(in crate::store) fn check_streams_tip(&self) -> anyhow::Result<()> {
        let newest: Option<i64> = self.conn()?.query_one("SELECT MAX(cursor) FROM stream_events", &[])?.get(0);
        let newest = newest.unwrap_or(0);
        if self.streams_seen.swap(newest, Ordering::Relaxed) < newest {
            self.streams_changed();
        }
        Ok(())
    }

    pub(in crate::store) fn stream_last(&self, stream: &str) -> anyhow::Result<i64> {
        let last: Option<i64> =
            self.conn()?.query_one("SELECT MAX(cursor) FROM stream_events WHERE stream = $1", &[&stream])?.get(0);
        Ok(last.unwrap_or(0))
    }

    pub(in crate::store) fn consumer_acked(&self, stream: &str, name: &str) -> anyhow::Result<Option<i64>> {
        let row = self
            .conn()?
            .query_opt("SELECT acked FROM stream_consumers WHERE stream = $1 AND name = $2", &[&stream, &name])?;
        Ok(row.map(|r| r.get(0)))
    }

    pub(in crate::store) fn ack(&self, stream: &str, name: &str, cursor: i64) -> anyhow::Result<i64> {
        let row = self.conn()?.query_one(
            "INSERT INTO stream_consumers (stream, name, acked, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (stream, name) DO UPDATE
                SET acked = GREATEST(stream_consumers.acked, excluded.acked), updated_at = excluded.updated_at
             RETURNING acked",
            &[&stream, &name, &cursor, &crate::time::now_ms()],
        )?;
        Ok(row.get(0))
    }
}
