//! A new message in PostgreSQL: its record, its bytes (in chunks, `bytes.rs`), its deliveries and
//! its stream events in ONE transaction, committed before the session may answer 250. Small
//! messages share a group commit (`commit.rs`); a large one commits alone, straight from the
//! caller's buffer, so its bytes are never copied whole. The deliveries due now are leased to this
//! gateway in the same rows, and handed back to the caller to attempt at once.

use anyhow::Context;

use super::commit::Work;
use super::{Postgres, bytes, lease_until, opt_text, text};
use crate::mail::{DeliveryStatus, EventType};
use crate::store::{Delivery, NewMessage};

/// Messages up to this size are group committed (their bytes copied into the queued row); larger
/// ones commit in a transaction of their own, written from the caller's buffer.
const GROUP_MAX: usize = 1 << 20;

/// A message's rows, owned, as queued for the group commit (another session's thread writes them).
pub(super) struct Row {
    id: String,
    received_at: i64,
    client_ip: String,
    helo: String,
    mail_from: String,
    rcpt_to: String,
    size: i64,
    sha256: String,
    subject: Option<String>,
    from_addr: Option<String>,
    parsed_status: String,
    event_message: String,
    raw_inline: bool,
    event_type: EventType,
    disposition: String,
    keep_files: bool,
    /// (filename, content_type, size, sha256)
    attachments: Vec<(Option<String>, String, i64, String)>,
    deliveries: Vec<NewDelivery>,
    /// (stream, event id)
    streams: Vec<(String, String)>,
    /// The bytes (raw message, then each attachment), owned for a group-committed message; empty
    /// for one written alone (its bytes are borrowed then).
    owned: Vec<(i32, Vec<u8>)>,
}

struct NewDelivery {
    id: String,
    event_id: String,
    endpoint: String,
    due: i64,
    /// Leased to this gateway from the start: a session's sync attempt, or one due now that the
    /// caller attempts at once (`hand_off`). Until `lease_until`; the renewal keeps it.
    leased: bool,
}

impl Row {
    fn new(m: &NewMessage<'_>, own_bytes: bool) -> Row {
        let disposition = match (m.endpoints.is_empty(), m.keep_files, &m.not_sent) {
            (false, _, _) => "queued".to_string(),
            (true, true, _) if !m.streams.is_empty() => "streamed".to_string(),
            (true, true, Some(why)) => format!("stored: {why}"),
            (true, true, None) => "stored".to_string(),
            (true, false, _) => "dropped".to_string(),
        };
        Row {
            id: m.id.to_string(),
            received_at: m.received_at,
            client_ip: text(m.client_ip),
            helo: text(m.helo),
            mail_from: text(m.mail_from),
            rcpt_to: serde_json::to_string(m.rcpt_to).unwrap_or_else(|_| "[]".into()),
            size: m.raw.len() as i64,
            sha256: m.sha256.to_string(),
            subject: opt_text(m.subject),
            from_addr: opt_text(m.from_addr),
            parsed_status: text(m.parsed_status),
            event_message: text(m.event_message),
            raw_inline: m.raw_inline,
            event_type: m.event_type,
            disposition: text(&disposition),
            keep_files: m.keep_files,
            attachments: m
                .attachments
                .iter()
                .map(|a| {
                    let size = a.bytes.len() as i64;
                    (opt_text(a.filename), text(a.content_type), size, a.sha256.to_string())
                })
                .collect(),
            deliveries: m
                .endpoints
                .iter()
                .map(|f| NewDelivery {
                    id: crate::ids::new_id("dlv"),
                    event_id: crate::ids::new_id("evt"),
                    endpoint: f.endpoint.clone(),
                    due: f.due,
                    // A fifo endpoint's delivery may have older ones pending: only the queue knows its turn.
                    leased: f.sync || (!f.ordered && f.due <= m.received_at),
                })
                .collect(),
            streams: m.streams.iter().map(|s| (s.clone(), crate::ids::new_id("evt"))).collect(),
            owned: if own_bytes && m.keep_files {
                parts(m).map(|(p, b)| (p, b.to_vec())).collect()
            } else {
                Vec::new()
            },
        }
    }
}

/// The bytes a kept message stores: the raw message (part -1), then each attachment by index.
fn parts<'a>(m: &'a NewMessage<'a>) -> impl Iterator<Item = (i32, &'a [u8])> + 'a {
    std::iter::once((bytes::RAW, m.raw)).chain(m.attachments.iter().enumerate().map(|(i, a)| (i as i32, a.bytes)))
}

/// The rows of a group-committed message. Its lease owner and expiry are fixed when queued.
struct Queued {
    row: Row,
    owner: String,
    lease_until: i64,
}

impl Work for Queued {
    fn write(&self, tx: &mut postgres::Transaction<'_>) -> anyhow::Result<()> {
        let borrowed: Vec<(i32, &[u8])> = self.row.owned.iter().map(|(p, b)| (*p, &b[..])).collect();
        insert_rows(tx, &self.row, &borrowed, &self.owner, self.lease_until)
    }
    fn is_promise(&self) -> bool {
        true
    }
    fn wakes_schedulers(&self) -> bool {
        // Deliveries leased here are this gateway's to attempt; the others are for anyone.
        self.row.deliveries.iter().any(|d| !d.leased)
    }
    fn streams(&self) -> bool {
        !self.row.streams.is_empty()
    }
}

fn insert_rows(
    tx: &mut postgres::Transaction<'_>,
    m: &Row,
    contents: &[(i32, &[u8])],
    owner: &str,
    lease_until: i64,
) -> anyhow::Result<()> {
    let removed = (!m.keep_files).then_some(m.received_at);
    let stmt = tx.prepare(
        "INSERT INTO messages (id, received_at, client_ip, helo, mail_from, rcpt_to, size, sha256, subject,
             from_addr, parsed_status, event_message, raw_inline, type, disposition, files_removed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )?;
    tx.execute(
        &stmt,
        &[
            &m.id,
            &m.received_at,
            &m.client_ip,
            &m.helo,
            &m.mail_from,
            &m.rcpt_to,
            &m.size,
            &m.sha256,
            &m.subject,
            &m.from_addr,
            &m.parsed_status,
            &m.event_message,
            &m.raw_inline,
            &m.event_type.as_str(),
            &m.disposition,
            &removed,
        ],
    )?;
    let stmt = tx.prepare(
        "INSERT INTO attachments (message_id, idx, filename, content_type, size, sha256) VALUES ($1, $2, $3, $4, $5, $6)",
    )?;
    for (idx, (filename, content_type, size, sha256)) in m.attachments.iter().enumerate() {
        tx.execute(&stmt, &[&m.id, &(idx as i32), filename, content_type, size, sha256])?;
    }
    if m.keep_files {
        bytes::insert(tx, &m.id, contents)?;
    }
    let stmt = tx.prepare(
        "INSERT INTO deliveries (id, message_id, event_id, endpoint, status, next_attempt_at, created_at, updated_at,
             lease_owner, lease_until)
         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $6, $7, $8)",
    )?;
    for d in &m.deliveries {
        let (who, until) = if d.leased { (Some(owner), Some(lease_until)) } else { (None, None) };
        tx.execute(&stmt, &[&d.id, &m.id, &d.event_id, &d.endpoint, &d.due, &m.received_at, &who, &until])?;
    }
    let stmt =
        tx.prepare("INSERT INTO stream_events (stream, event_id, message_id, created_at) VALUES ($1, $2, $3, $4)")?;
    for (stream, event_id) in &m.streams {
        tx.execute(&stmt, &[stream, event_id, &m.id, &m.received_at])?;
    }
    Ok(())
}

impl Postgres {
    /// The durable hand-off (see `sqlite::Sqlite::ingest`): returns once the transaction with the
    /// message, its bytes, its deliveries and its stream events has committed, with the deliveries
    /// due now (not a session's sync ones, nor a fifo endpoint's) leased to this gateway.
    pub(in crate::store) fn ingest(&self, m: &NewMessage<'_>) -> anyhow::Result<Vec<Delivery>> {
        let until = lease_until(m.received_at.max(crate::time::now_ms()), self.lease);
        let alone = m.keep_files && m.raw.len() > GROUP_MAX;
        let row = Row::new(m, !alone);
        let sync: Vec<bool> = m.endpoints.iter().map(|f| f.sync).collect();
        let now: Vec<Delivery> = row
            .deliveries
            .iter()
            .zip(sync)
            .filter(|(d, sync)| d.leased && !sync)
            .map(|(d, _)| Delivery {
                id: d.id.clone(),
                message_id: row.id.clone(),
                event_id: d.event_id.clone(),
                endpoint: d.endpoint.clone(),
                status: DeliveryStatus::Pending,
                attempts: 0,
                step: 0,
                retry_requested_at: None,
                next_attempt_at: Some(d.due),
                last_status: None,
                last_error: None,
                created_at: m.received_at,
            })
            .collect();
        let leased: Vec<String> = row.deliveries.iter().filter(|d| d.leased).map(|d| d.id.clone()).collect();
        // Renewed from the start: the lease must not lapse while the commit is slow.
        self.hold(&leased);
        let committed = if alone {
            self.insert_alone(m, &row, until)
        } else {
            self.commit(Queued { row, owner: self.owner.clone(), lease_until: until })
        };
        if committed.is_err() {
            self.drop_held(&leased);
        }
        committed.context("storing the message").map(|()| now)
    }

    /// A large message's own transaction, its bytes written in chunks from the caller's buffer.
    fn insert_alone(&self, m: &NewMessage<'_>, row: &Row, until: i64) -> anyhow::Result<()> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let contents: Vec<(i32, &[u8])> = parts(m).collect();
        if !row.streams.is_empty() {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&super::commit::STREAMS_LOCK])?;
        }
        insert_rows(&mut tx, row, &contents, &self.owner, until)?;
        if row.deliveries.iter().any(|d| !d.leased) {
            tx.batch_execute(&format!("NOTIFY {}", super::listen::DUE))?;
        }
        if !row.streams.is_empty() {
            tx.batch_execute(&format!("NOTIFY {}", super::listen::STREAMS))?;
        }
        tx.commit().context("committing")?;
        if !row.streams.is_empty() {
            self.streams_changed();
        }
        Ok(())
    }

    /// Removes a message that was stored but never acknowledged (a sync delivery failed).
    pub(in crate::store) fn withdraw(&self, message_id: &str) -> anyhow::Result<()> {
        let mut conn = self.conn()?;
        // Every other row of the message goes with it (ON DELETE CASCADE).
        conn.execute("DELETE FROM messages WHERE id = $1", &[&message_id])?;
        Ok(())
    }
}
