//! The streams' logs (`stream_events`, written with their message in `ingest.rs`) and their named
//! consumers' places (`stream_consumers`). Readers wait on `streams_watch`: it moves after every
//! commit that added stream events in this process, and when `check_streams_tip` (run once a
//! second by `serve`) sees a newer cursor written by another process (`mxhook deliver`).

use rusqlite::{OptionalExtension, params};

use super::Sqlite;
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

/// A stream event with its `message` object as sent (`raw.base64` put back): what a reader gets.
#[derive(Debug, Clone)]
pub struct StreamItem {
    pub event: StreamEvent,
    pub message_json: String,
}

/// One page of a stream for a reader.
#[derive(Debug, Clone)]
pub struct StreamPage {
    pub items: Vec<StreamItem>,
    /// Where the next page starts: the last item's cursor, or further when the type filter skipped
    /// events after it (so a filtered reader does not read them again).
    pub next: i64,
    /// The page reached the end of the stream as it was when read.
    pub done: bool,
}

/// Rows read per statement by `stream_read` (and events deleted per statement by retention).
const SCAN: i64 = 200;

impl Sqlite {
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
        let conn = self.streams_conn();
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

    /// Up to `limit` events of `stream` after `after` (only `types`, when given), oldest first, each
    /// with its message's JSON. Reads at most a few hundred rows per statement and holds the
    /// readers' connection only while it reads them.
    pub fn stream_read(
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
            let conn = self.streams_conn();
            let mut stmt = conn.prepare_cached(
                "SELECT s.cursor, s.stream, s.event_id, s.message_id, m.type, s.created_at, m.event_message, m.raw_inline,
                   m.event_codec, CASE m.event_codec WHEN 2 THEN (SELECT data FROM contents c WHERE c.message_id = m.id AND c.part = -1) END
                 FROM stream_events s JOIN messages m ON m.id = s.message_id
                 WHERE s.stream = ?1 AND s.cursor > ?2 ORDER BY s.cursor LIMIT ?3",
            )?;
            'scan: loop {
                let mut rows = stmt.query(params![stream, next, SCAN])?;
                let mut n = 0;
                while let Some(r) = rows.next()? {
                    n += 1;
                    let cursor: i64 = r.get(0)?;
                    let event_type = EventType::parse(&r.get::<_, String>(4)?).unwrap_or(EventType::Received);
                    if types.is_none_or(|t| t.contains(&event_type)) {
                        if found.len() == limit {
                            break 'scan false;
                        }
                        let event = StreamEvent {
                            cursor,
                            stream: r.get(1)?,
                            event_id: r.get(2)?,
                            message_id: r.get(3)?,
                            event_type,
                            created_at: r.get(5)?,
                        };
                        found.push((event, super::reads::stored_event(r, 6, 8, 9)?, r.get(7)?));
                    }
                    next = cursor;
                }
                if n < SCAN {
                    break true;
                }
            }
        };
        // The raw bytes come from another connection (or the spool): not under the readers' lock.
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

    /// Deletes the events of `stream` created before `cutoff_ms` (their messages stay: they have
    /// their own retention). A few hundred per statement, so the write lock is never held long.
    pub fn purge_stream(&self, stream: &str, cutoff_ms: i64) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let n = self.conn().execute(
                "DELETE FROM stream_events WHERE cursor IN
                 (SELECT cursor FROM stream_events WHERE stream = ?1 AND created_at < ?2 ORDER BY cursor LIMIT ?3)",
                params![stream, cutoff_ms, SCAN],
            )?;
            total += n;
            if n < SCAN as usize {
                return Ok(total);
            }
        }
    }

    /// Moves `streams_watch` when the newest cursor of any stream is newer than the last one seen
    /// here: how readers in `serve` notice events another process (`mxhook deliver`) committed.
    pub fn check_streams_tip(&self) -> anyhow::Result<()> {
        use std::sync::atomic::Ordering;
        let newest: Option<i64> =
            self.streams_conn().query_row("SELECT MAX(cursor) FROM stream_events", [], |r| r.get(0))?;
        let newest = newest.unwrap_or(0);
        if self.streams_seen.swap(newest, Ordering::Relaxed) < newest {
            self.streams_changed();
        }
        Ok(())
    }

    /// The newest cursor of `stream` (0 when it has none): where `?from=now` starts.
    pub fn stream_last(&self, stream: &str) -> anyhow::Result<i64> {
        let conn = self.streams_conn();
        let last: Option<i64> =
            conn.query_row("SELECT MAX(cursor) FROM stream_events WHERE stream = ?1", [stream], |r| r.get(0))?;
        Ok(last.unwrap_or(0))
    }

    /// A named consumer's acked cursor (None: it has never acked).
    pub fn consumer_acked(&self, stream: &str, name: &str) -> anyhow::Result<Option<i64>> {
        let conn = self.streams_conn();
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

#[cfg(test)]
mod tests {
    use crate::mail::EventType;
    use crate::store::sqlite::Sqlite;
    use crate::store::sqlite::tests::message;

    fn add(store: &Sqlite, id: &str, at: i64, streams: &[String]) {
        let m = crate::store::sqlite::NewMessage { streams, ..message(id, at, &[], &[]) };
        store.ingest(&m).unwrap();
    }

    #[test]
    fn pages_follow_the_cursor_and_retention_drops_only_old_events_of_one_stream() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path()).unwrap();
        let dev = vec!["dev".to_string()];
        let both = vec!["dev".to_string(), "audit".to_string()];
        for i in 0..5 {
            add(&store, &format!("msg_{i}"), 1_000 * i, if i % 2 == 0 { &both } else { &dev });
        }
        let first = store.stream_read("dev", 0, 3, None).unwrap();
        assert_eq!(first.items.len(), 3);
        assert!(!first.done);
        assert_eq!(first.next, first.items[2].event.cursor);
        let rest = store.stream_read("dev", first.next, 3, None).unwrap();
        assert_eq!((rest.items.len(), rest.done), (2, true));
        let ids: Vec<_> = first.items.iter().chain(&rest.items).map(|i| i.event.message_id.clone()).collect();
        assert_eq!(ids, ["msg_0", "msg_1", "msg_2", "msg_3", "msg_4"]);
        assert_eq!(rest.items[0].message_json, "{}");
        // A filter that matches nothing still moves the reader to the end.
        let none = store.stream_read("dev", 0, 3, Some(&[EventType::Bounced])).unwrap();
        assert!(none.items.is_empty() && none.done);
        assert_eq!(none.next, store.stream_last("dev").unwrap());

        assert_eq!(store.purge_stream("dev", 2_500).unwrap(), 3);
        let left = store.stream_read("dev", 0, 10, None).unwrap();
        assert_eq!(left.items.len(), 2);
        assert_eq!(store.stream_read("audit", 0, 10, None).unwrap().items.len(), 3);
    }

    #[test]
    fn an_ack_never_moves_back_and_the_tip_check_wakes_readers_once_per_new_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path()).unwrap();
        assert_eq!(store.ack("dev", "w1", 5).unwrap(), 5);
        assert_eq!(store.ack("dev", "w1", 3).unwrap(), 5);
        assert_eq!(store.consumer_acked("dev", "w2").unwrap(), None);
        let mut watch = store.streams_watch();
        watch.borrow_and_update();
        // Another process's write, as the tip check sees it (this store's commit also moves it).
        add(&Sqlite::open(dir.path()).unwrap(), "msg_1", 1, &["dev".to_string()]);
        store.check_streams_tip().unwrap();
        assert!(watch.has_changed().unwrap());
        watch.borrow_and_update();
        store.check_streams_tip().unwrap();
        assert!(!watch.has_changed().unwrap());
    }
}
