//! The API's reads: messages and deliveries, filtered and a page at a time, newest first. A page
//! ends at a position `(time, id)` and the next page starts strictly after it, so rows that arrive
//! meanwhile never shift a page (keyset pagination; no OFFSET).

use rusqlite::params;

use super::reads::{DELIVERY_COLS, MESSAGE_COLS, delivery_row, message_row};
use super::{Delivery, MessageRow, Sqlite};
use crate::mail::{DeliveryStatus, EventType};

/// Where a page of a newest-first list ends: the last row's time (ms) and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub at: i64,
    pub id: String,
}

/// `GET /v1/messages` filters; None: no filter.
#[derive(Debug, Default)]
pub struct MessageFilter {
    /// A recipient of the envelope (`rcpt_to`), ASCII case-insensitive.
    pub to: Option<String>,
    /// The From header's address or the envelope sender, ASCII case-insensitive.
    pub from: Option<String>,
    pub kind: Option<EventType>,
    /// Received at or after (ms).
    pub since: Option<i64>,
    /// Received before (ms).
    pub until: Option<i64>,
    /// The subject contains this, ASCII case-insensitive.
    pub subject: Option<String>,
}

/// `GET /v1/deliveries` filters.
#[derive(Debug, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub endpoint: Option<String>,
    pub message: Option<String>,
}

impl Sqlite {
    /// Up to `limit` messages after `after` (newest first) that pass `f`.
    pub fn list_messages(
        &self,
        f: &MessageFilter,
        after: Option<&Position>,
        limit: usize,
    ) -> anyhow::Result<Vec<MessageRow>> {
        let conn = self.deliver_conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {MESSAGE_COLS}, disposition FROM messages
             WHERE (?1 IS NULL OR (received_at, id) < (?1, ?2))
               AND (?3 IS NULL OR EXISTS (SELECT 1 FROM json_each(messages.rcpt_to) WHERE lower(value) = lower(?3)))
               AND (?4 IS NULL OR lower(from_addr) = lower(?4) OR lower(mail_from) = lower(?4))
               AND (?5 IS NULL OR type = ?5)
               AND (?6 IS NULL OR received_at >= ?6)
               AND (?7 IS NULL OR received_at < ?7)
               AND (?8 IS NULL OR instr(lower(subject), lower(?8)) > 0)
             ORDER BY received_at DESC, id DESC LIMIT ?9"
        ))?;
        let rows = stmt.query_map(
            params![
                after.map(|p| p.at),
                after.map(|p| p.id.as_str()),
                f.to,
                f.from,
                f.kind.map(EventType::as_str),
                f.since,
                f.until,
                f.subject,
                limit as i64
            ],
            message_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` deliveries after `after` (newest first: by the message's arrival) that pass `f`.
    pub fn list_deliveries(
        &self,
        f: &DeliveryFilter,
        after: Option<&Position>,
        limit: usize,
    ) -> anyhow::Result<Vec<Delivery>> {
        let conn = self.deliver_conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries
             WHERE (?1 IS NULL OR (created_at, id) < (?1, ?2))
               AND (?3 IS NULL OR status = ?3)
               AND (?4 IS NULL OR endpoint = ?4)
               AND (?5 IS NULL OR message_id = ?5)
             ORDER BY created_at DESC, id DESC LIMIT ?6"
        ))?;
        let rows = stmt.query_map(
            params![
                after.map(|p| p.at),
                after.map(|p| p.id.as_str()),
                f.status.map(DeliveryStatus::as_str),
                f.endpoint,
                f.message,
                limit as i64
            ],
            delivery_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::{DeliveryFilter, MessageFilter, Position};
    use crate::store::sqlite::Sqlite;
    use crate::store::sqlite::tests::add;

    #[test]
    fn pages_follow_each_other_newest_first_and_filters_apply() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path()).unwrap();
        for (i, id) in ["msg_a", "msg_b", "msg_c", "msg_d"].iter().enumerate() {
            add(&store, id, 1_000 + (i as i64 / 2), &["app"]);
        }
        let all = MessageFilter::default();
        let first = store.list_messages(&all, None, 3).unwrap();
        let ids: Vec<_> = first.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["msg_d", "msg_c", "msg_b"]);
        let after = Position { at: first[2].received_at, id: first[2].id.clone() };
        let rest = store.list_messages(&all, Some(&after), 3).unwrap();
        assert_eq!(rest.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["msg_a"]);

        let window = MessageFilter { since: Some(1_001), until: Some(1_002), ..Default::default() };
        assert_eq!(store.list_messages(&window, None, 10).unwrap().len(), 2);
        let nobody = MessageFilter { to: Some("nobody@example.test".into()), ..Default::default() };
        assert!(store.list_messages(&nobody, None, 10).unwrap().is_empty());

        let d =
            store.list_deliveries(&DeliveryFilter { message: Some("msg_b".into()), ..Default::default() }, None, 10);
        assert_eq!(d.unwrap().len(), 1);
    }
}
