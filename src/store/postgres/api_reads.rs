//! The API's reads and edits, as SQLite's (`sqlite/api_reads.rs`, `sqlite/removal.rs`, `replay` in
//! `sqlite/queue.rs`): keyset pages newest first, a message's attachments, deleting one message and
//! replaying a window of deliveries.

use super::Postgres;
use super::reads::{DELIVERY_COLS, MESSAGE_COLS, delivery_row, message_row};
use crate::mail::{DeliveryStatus, EventType};
use crate::store::{AttachmentRow, Delivery, DeliveryFilter, MessageFilter, MessageRow, Position, Removal};
use crate::time::now_ms;

impl Postgres {
    pub(in crate::store) fn list_messages(
        &self,
        f: &MessageFilter,
        after: Option<&Position>,
        limit: usize,
    ) -> anyhow::Result<Vec<MessageRow>> {
        let rows = self.conn()?.query(
            &format!(
                "SELECT {MESSAGE_COLS} FROM messages
                 WHERE ($1::bigint IS NULL OR (received_at, id) < ($1, $2::text))
                   AND ($3::text IS NULL OR EXISTS
                        (SELECT 1 FROM json_array_elements_text(messages.rcpt_to::json) AS r(v) WHERE lower(r.v) = lower($3)))
                   AND ($4::text IS NULL OR lower(from_addr) = lower($4) OR lower(mail_from) = lower($4))
                   AND ($5::text IS NULL OR type = $5)
                   AND ($6::bigint IS NULL OR received_at >= $6)
                   AND ($7::bigint IS NULL OR received_at < $7)
                   AND ($8::text IS NULL OR strpos(lower(subject), lower($8)) > 0)
                 ORDER BY received_at DESC, id DESC LIMIT $9"
            ),
            &[
                &after.map(|p| p.at),
                &after.map(|p| p.id.as_str()),
                &f.to,
                &f.from,
                &f.kind.map(EventType::as_str),
                &f.since,
                &f.until,
                &f.subject,
                &(limit as i64),
            ],
        )?;
        rows.iter().map(message_row).collect()
    }

    pub(in crate::store) fn list_deliveries(
        &self,
        f: &DeliveryFilter,
        after: Option<&Position>,
        limit: usize,
    ) -> anyhow::Result<Vec<Delivery>> {
        let rows = self.conn()?.query(
            &format!(
                "SELECT {DELIVERY_COLS} FROM deliveries
                 WHERE ($1::bigint IS NULL OR (created_at, id) < ($1, $2::text))
                   AND ($3::text IS NULL OR status = $3)
                   AND ($4::text IS NULL OR endpoint = $4)
                   AND ($5::text IS NULL OR message_id = $5)
                 ORDER BY created_at DESC, id DESC LIMIT $6"
            ),
            &[
                &after.map(|p| p.at),
                &after.map(|p| p.id.as_str()),
                &f.status.map(DeliveryStatus::as_str),
                &f.endpoint,
                &f.message,
                &(limit as i64),
            ],
        )?;
        rows.iter().map(delivery_row).collect()
    }

    pub(in crate::store) fn deliveries_of(&self, message_ids: &[String]) -> anyhow::Result<Vec<Delivery>> {
        let rows = self.conn()?.query(
            &format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE message_id = ANY($1) ORDER BY created_at, id"),
            &[&message_ids],
        )?;
        rows.iter().map(delivery_row).collect()
    }

    pub(in crate::store) fn attachments(&self, message_id: &str) -> anyhow::Result<Vec<AttachmentRow>> {
        let rows = self.conn()?.query(
            "SELECT filename, content_type, size FROM attachments WHERE message_id = $1 ORDER BY idx",
            &[&message_id],
        )?;
        Ok(rows.iter().map(|r| AttachmentRow { filename: r.get(0), content_type: r.get(1), size: r.get(2) }).collect())
    }

    /// Deletes a message unless one of its deliveries is leased right now (by any gateway): its
    /// outcome is about to be recorded. The delivery rows are locked first, so no claim takes one
    /// between the check and the delete; every other row goes with the message (ON DELETE CASCADE).
    pub(in crate::store) fn delete_message(&self, message_id: &str) -> anyhow::Result<Removal> {
        let held: Vec<String> = self.held().iter().cloned().collect();
        let now = now_ms();
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        if tx.query_opt("SELECT 1 FROM messages WHERE id = $1 FOR UPDATE", &[&message_id])?.is_none() {
            return Ok(Removal::NotFound);
        }
        let rows = tx.query(
            "SELECT id, status, lease_owner IS NOT NULL AND lease_until >= $2 FROM deliveries
             WHERE message_id = $1 ORDER BY id FOR UPDATE",
            &[&message_id, &now],
        )?;
        let mut pending = 0;
        for r in &rows {
            let (id, status, leased): (String, String, bool) = (r.get(0), r.get(1), r.get(2));
            if leased || held.contains(&id) {
                return Ok(Removal::InFlight);
            }
            pending += usize::from(status == "pending");
        }
        tx.execute("DELETE FROM messages WHERE id = $1", &[&message_id])?;
        tx.commit()?;
        Ok(Removal::Deleted { cancelled: pending })
    }

    pub(in crate::store) fn replay(
        &self,
        since: i64,
        until: i64,
        endpoint: Option<&str>,
        status: Option<DeliveryStatus>,
    ) -> anyhow::Result<usize> {
        let now = now_ms();
        let mut conn = self.conn()?;
        let n = conn.execute(
            // In id order (mod.rs, "Lock order"): the deliverer records outcomes of the same rows.
            "WITH locked AS MATERIALIZED (
                 SELECT id FROM deliveries
                 WHERE message_id IN (SELECT id FROM messages WHERE received_at >= $2 AND received_at < $3)
                   AND ($4::text IS NULL OR endpoint = $4) AND ($5::text IS NULL OR status = $5)
                 ORDER BY id FOR NO KEY UPDATE)
             UPDATE deliveries SET status = 'pending', retry_requested_at = $1, next_attempt_at = $1, updated_at = $1
             WHERE id IN (SELECT id FROM locked)",
            &[&now, &since, &until, &endpoint, &status.map(DeliveryStatus::as_str)],
        )? as usize;
        if n > 0 {
            conn.batch_execute(&format!("NOTIFY {}", super::listen::DUE))?;
        }
        Ok(n)
    }
}
