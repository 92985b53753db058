//! The reads behind the CLI, HTTP and the scheduler, as SQLite's (`sqlite/reads.rs`), over the
//! whole cluster's rows: any gateway lists every message.

use postgres::Row;

use super::Postgres;
use crate::mail::{DeliveryStatus, EventType};
use crate::store::{AttachmentRow, Attempt, Delivery, MessageRow};

pub(super) const DELIVERY_COLS: &str = "id, message_id, event_id, endpoint, status, attempts, step, retry_requested_at, next_attempt_at, last_status, last_error, created_at";
pub(super) const MESSAGE_COLS: &str = "id, received_at, client_ip, helo, mail_from, rcpt_to, size, sha256, subject, from_addr, parsed_status, event_message, raw_inline, type, disposition";

impl Postgres {
    pub(in crate::store) fn attachment(&self, message_id: &str, index: usize) -> anyhow::Result<Option<AttachmentRow>> {
        let row = self.conn()?.query_opt(
            "SELECT filename, content_type, size FROM attachments WHERE message_id = $1 AND idx = $2",
            &[&message_id, &(index as i32)],
        )?;
        Ok(row.map(|r| AttachmentRow { filename: r.get(0), content_type: r.get(1), size: r.get(2) }))
    }

    pub(in crate::store) fn deliveries(
        &self,
        status: Option<DeliveryStatus>,
        message_id: Option<&str>,
    ) -> anyhow::Result<Vec<Delivery>> {
        let rows = self.conn()?.query(
            &format!(
                "SELECT {DELIVERY_COLS} FROM deliveries
                 WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR message_id = $2)
                 ORDER BY created_at, id"
            ),
            &[&status.map(DeliveryStatus::as_str), &message_id],
        )?;
        rows.iter().map(delivery_row).collect()
    }

    pub(in crate::store) fn delivery(&self, id: &str) -> anyhow::Result<Option<Delivery>> {
        let row = self.conn()?.query_opt(&format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE id = $1"), &[&id])?;
        row.as_ref().map(delivery_row).transpose()
    }

    pub(in crate::store) fn attempts(&self, delivery_id: &str) -> anyhow::Result<Vec<Attempt>> {
        let rows = self.conn()?.query(
            "SELECT attempt, started_at, duration_ms, http_status, error, response_body
             FROM attempts WHERE delivery_id = $1 ORDER BY id",
            &[&delivery_id],
        )?;
        Ok(rows
            .iter()
            .map(|r| Attempt {
                attempt: r.get(0),
                started_at: r.get(1),
                duration_ms: r.get(2),
                http_status: r.get(3),
                error: r.get(4),
                response_body: r.get(5),
            })
            .collect())
    }

    pub(in crate::store) fn messages(&self, limit: usize, kind: Option<EventType>) -> anyhow::Result<Vec<MessageRow>> {
        let rows = self.conn()?.query(
            &format!(
                "SELECT {MESSAGE_COLS} FROM messages WHERE ($2::text IS NULL OR type = $2)
                 ORDER BY received_at DESC, id DESC LIMIT $1"
            ),
            &[&(limit as i64), &kind.map(EventType::as_str)],
        )?;
        rows.iter().map(message_row).collect()
    }

    pub(in crate::store) fn message(&self, id: &str) -> anyhow::Result<Option<MessageRow>> {
        let row = self.conn()?.query_opt(&format!("SELECT {MESSAGE_COLS} FROM messages WHERE id = $1"), &[&id])?;
        row.as_ref().map(message_row).transpose()
    }

    pub(in crate::store) fn queue_stats(&self) -> anyhow::Result<(i64, Option<i64>)> {
        let r =
            self.conn()?.query_one("SELECT COUNT(*), MIN(created_at) FROM deliveries WHERE status = 'pending'", &[])?;
        Ok((r.get(0), r.get(1)))
    }
}

pub(super) fn delivery_row(r: &Row) -> anyhow::Result<Delivery> {
    let status: &str = r.get(4);
    Ok(Delivery {
        id: r.get(0),
        message_id: r.get(1),
        event_id: r.get(2),
        endpoint: r.get(3),
        status: DeliveryStatus::parse(status).ok_or_else(|| anyhow::anyhow!("delivery status `{status}`"))?,
        attempts: r.get(5),
        step: r.get(6),
        retry_requested_at: r.get(7),
        next_attempt_at: r.get(8),
        last_status: r.get(9),
        last_error: r.get(10),
        created_at: r.get(11),
    })
}

pub(super) fn message_row(r: &Row) -> anyhow::Result<MessageRow> {
    let kind: &str = r.get(13);
    Ok(MessageRow {
        id: r.get(0),
        received_at: r.get(1),
        client_ip: r.get(2),
        helo: r.get(3),
        mail_from: r.get(4),
        rcpt_to: serde_json::from_str(r.get(5)).unwrap_or_default(),
        size: r.get(6),
        sha256: r.get(7),
        subject: r.get(8),
        from_addr: r.get(9),
        parsed_status: r.get(10),
        event_message: r.get(11),
        raw_inline: r.get(12),
        event_type: EventType::parse(kind).ok_or_else(|| anyhow::anyhow!("event type `{kind}`"))?,
        disposition: r.get(14),
    })
}
