//! The API's and the CLI's listings: messages and deliveries, filtered and a page at a time, newest
//! first. A page ends at a position `(time, id)` and the next page starts strictly after it, so rows
//! that arrive meanwhile never shift a page (keyset pagination; no OFFSET). Each query names only the
//! filters given, so that the planner walks the index of the order (`messages_received`,
//! `messages_type`, `deliveries_created`, `deliveries_status`, `deliveries_endpoint`) and stops after `limit` rows: a page
//! costs the same at a thousand rows as at millions.

use rusqlite::types::Value;

use super::reads::{DELIVERY_COLS, MESSAGE_COLS, delivery_row, message_row};
use super::{Delivery, MessageRow, Sqlite};
use crate::mail::{DeliveryStatus, EventType};

/// Where a page of a newest-first list ends: the last row's time (ms) and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub at: i64,
    pub id: String,
}

impl Position {
    /// The cursor of a page's last row, as the API and the CLI give it out: `<ms>.<id>`
    /// (documented as opaque; every value of this form is a valid place to start from).
    pub fn cursor(&self) -> String {
        format!("{}.{}", self.at, self.id)
    }

    /// A cursor read back; None when it is not of the form `cursor` makes.
    pub fn parse(v: &str) -> Option<Position> {
        let (at, id) = v.split_once('.')?;
        let digits = !at.is_empty() && at.len() <= 15 && at.bytes().all(|b| b.is_ascii_digit());
        let word = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !digits || !word {
            return None;
        }
        Some(Position { at: at.parse().ok()?, id: id.to_string() })
    }
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

/// A WHERE clause made of the conditions that apply, and their parameters in order (`?N`).
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    params: Vec<Value>,
}

impl Conditions {
    /// Adds `sql`, whose `?` placeholders take `values` in order (numbered as they are bound).
    fn add(&mut self, sql: &str, values: impl IntoIterator<Item = Value>) {
        let mut values = values.into_iter();
        let mut out = String::new();
        for (i, part) in sql.split('?').enumerate() {
            if i > 0 {
                self.params.push(values.next().unwrap_or(Value::Null));
                out.push_str(&format!("?{}", self.params.len()));
            }
            out.push_str(part);
        }
        self.sql.push(out);
    }

    /// `LIMIT ?N`, bound: one cached statement serves every page size.
    fn limit(&mut self, n: usize) -> String {
        self.params.push(Value::Integer(n as i64));
        format!("LIMIT ?{}", self.params.len())
    }

    fn clause(&self) -> String {
        if self.sql.is_empty() { String::new() } else { format!("WHERE {}", self.sql.join(" AND ")) }
    }
}

impl Sqlite {
    /// Up to `limit` messages after `after` (newest first) that pass `f`.
    pub fn list_messages(
        &self,
        f: &MessageFilter,
        after: Option<&Position>,
        limit: usize,
    ) -> anyhow::Result<Vec<MessageRow>> {
        let mut w = Conditions::default();
        if let Some(p) = after {
            w.add("(received_at, id) < (?, ?)", [Value::Integer(p.at), Value::Text(p.id.clone())]);
        }
        if let Some(to) = &f.to {
            w.add(
                "EXISTS (SELECT 1 FROM json_each(messages.rcpt_to) WHERE lower(value) = lower(?))",
                [Value::Text(to.clone())],
            );
        }
        if let Some(from) = &f.from {
            w.add(
                "(lower(from_addr) = lower(?) OR lower(mail_from) = lower(?))",
                [Value::Text(from.clone()), Value::Text(from.clone())],
            );
        }
        if let Some(kind) = f.kind {
            w.add("type = ?", [Value::Text(kind.as_str().to_string())]);
            if kind != EventType::Received {
                // The condition of the partial index `messages_type`, word for word.
                w.add("type <> 'email.received'", []);
            }
        }
        if let Some(since) = f.since {
            w.add("received_at >= ?", [Value::Integer(since)]);
        }
        if let Some(until) = f.until {
            w.add("received_at < ?", [Value::Integer(until)]);
        }
        if let Some(subject) = &f.subject {
            w.add("instr(lower(subject), lower(?)) > 0", [Value::Text(subject.clone())]);
        }
        let sql = format!(
            "SELECT {MESSAGE_COLS}, disposition FROM messages {} ORDER BY received_at DESC, id DESC {}",
            w.clause(),
            w.limit(limit)
        );
        let conn = self.deliver_conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(w.params), message_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` deliveries after `after` (newest first: by the message's arrival) that pass `f`.
    pub fn list_deliveries(
        &self,
        f: &DeliveryFilter,
        after: Option<&Position>,
        limit: usize,
    ) -> anyhow::Result<Vec<Delivery>> {
        let mut w = Conditions::default();
        if let Some(p) = after {
            w.add("(created_at, id) < (?, ?)", [Value::Integer(p.at), Value::Text(p.id.clone())]);
        }
        if let Some(status) = f.status {
            w.add("status = ?", [Value::Text(status.as_str().to_string())]);
        }
        if let Some(endpoint) = &f.endpoint {
            w.add("endpoint = ?", [Value::Text(endpoint.clone())]);
        }
        if let Some(message) = &f.message {
            w.add("message_id = ?", [Value::Text(message.clone())]);
        }
        // One state's (or one endpoint's), newest first, off its index: without statistics SQLite
        // would rather take every row of the state from another index and sort them (seconds at a
        // million). A message's few deliveries come off `deliveries_message`.
        let index = match (&f.status, &f.endpoint, &f.message) {
            (_, _, Some(_)) => "",
            (Some(_), _, None) => "INDEXED BY deliveries_status",
            (None, Some(_), None) => "INDEXED BY deliveries_endpoint",
            (None, None, None) => "",
        };
        let sql = format!(
            "SELECT {DELIVERY_COLS} FROM deliveries {index} {} ORDER BY created_at DESC, id DESC {}",
            w.clause(),
            w.limit(limit)
        );
        let conn = self.deliver_conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(w.params), delivery_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every delivery of these messages (a page of `list_messages`: what became of each).
    pub fn deliveries_of(&self, message_ids: &[String]) -> anyhow::Result<Vec<Delivery>> {
        let conn = self.deliver_conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE message_id IN (SELECT value FROM json_each(?1))
             ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([serde_json::to_string(message_ids)?], delivery_row)?;
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
