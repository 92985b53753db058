//! The ingest writes: a new message as ingest hands it over (NewMessage), the rows queued for the
//! group commit (Row), and their INSERTs; where its bytes go is `Placement::of` (contents.rs).
//! Also the way back: a message withdrawn before it was acknowledged.

use anyhow::Context;
use rusqlite::params;

use super::codec::{self, Codec};
use super::commit::Work;
use super::contents::{self, Placement};
use super::{Delivery, Sqlite, spool};
use crate::mail::{DeliveryStatus, EventType};

/// One delivery to create for a new message: its destination (`Destination::key`), when its first
/// attempt is due, whether the session makes that attempt itself (a `sync` route), and whether its
/// endpoint takes events in order (`fifo`: it waits its turn in the queue, never handed off).
#[derive(Debug, Clone)]
pub struct FirstAttempt {
    pub endpoint: String,
    pub due: i64,
    pub sync: bool,
    pub ordered: bool,
}

/// What ingest hands the store: the message row and the endpoints to deliver it to.
pub struct NewMessage<'a> {
    pub id: &'a str,
    pub received_at: i64,
    pub client_ip: &'a str,
    pub helo: &'a str,
    pub mail_from: &'a str,
    pub rcpt_to: &'a [String],
    pub sha256: &'a str,
    pub subject: Option<&'a str>,
    pub from_addr: Option<&'a str>,
    pub parsed_status: &'a str,
    pub event_message: &'a str,
    /// `event_message` is stored without the `raw.base64` the event has.
    pub raw_inline: bool,
    /// What the message is (`classify/`): the event's `type`, stored with it.
    pub event_type: EventType,
    /// Why a message that is kept has no deliveries when its routes wanted some sent (e.g. no
    /// endpoint subscribes to its type): its disposition says `stored: <this>`.
    pub not_sent: Option<String>,
    pub raw: &'a [u8],
    /// False when every route dropped the message: only the record is kept.
    pub keep_files: bool,
    pub attachments: &'a [NewAttachment<'a>],
    /// Each endpoint to deliver to, with when its first attempt is due, and whether the
    /// session claims it for an attempt of its own (sync mode).
    pub endpoints: &'a [FirstAttempt],
    /// The streams that keep its event (each gets an event id of its own).
    pub streams: &'a [String],
}

pub struct NewAttachment<'a> {
    pub filename: Option<&'a str>,
    pub content_type: &'a str,
    pub sha256: &'a str,
    pub bytes: &'a [u8],
}

/// A message's rows as queued for the group commit (owned: another session's thread writes them).
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
    /// The event's JSON as stored (codec.rs), and how.
    event: Vec<u8>,
    event_codec: Codec,
    raw_inline: bool,
    event_type: EventType,
    not_sent: Option<String>,
    /// Where its bytes go (the group commit syncs the spool directory for `Spooled` ones).
    pub(super) placement: Placement,
    /// The bytes of a small message, kept in its transaction (contents.rs); empty when its files
    /// are in the spool, or when nothing is kept.
    contents: Vec<contents::Part>,
    /// (filename, content_type, size, sha256)
    attachments: Vec<(Option<String>, String, i64, String)>,
    deliveries: Vec<NewDelivery>,
    /// (stream, event id)
    streams: Vec<(String, String)>,
}

/// A delivery row to insert, its ids made before the commit so they can be handed on.
struct NewDelivery {
    id: String,
    event_id: String,
    endpoint: String,
    due: i64,
    /// A session's own sync attempt (`in_flight` set in the row).
    sync: bool,
    /// For a fifo endpoint: the claim decides when it is its turn (see `claim_due`).
    ordered: bool,
}

impl Row {
    /// The rows of `m`, its bytes and event compressed: on the session's thread, before it queues
    /// them, so the group commit's lock is never held while compressing.
    pub(super) fn new(m: &NewMessage<'_>) -> anyhow::Result<Row> {
        let placement = Placement::of(m.keep_files, m.raw.len());
        // An event repeats much of its raw message: when that is in the database too, it is the
        // event's dictionary (codec.rs), and costs the event only references to it.
        let dictionary = (placement == Placement::Inline && codec::usable_as_dictionary(m.raw)).then_some(m.raw);
        let event_codec = if dictionary.is_some() { Codec::ZstdAfterRaw } else { Codec::Zstd };
        Ok(Row {
            id: m.id.to_string(),
            received_at: m.received_at,
            client_ip: m.client_ip.to_string(),
            helo: m.helo.to_string(),
            mail_from: m.mail_from.to_string(),
            rcpt_to: serde_json::to_string(m.rcpt_to).unwrap_or_else(|_| "[]".into()),
            size: m.raw.len() as i64,
            sha256: m.sha256.to_string(),
            subject: m.subject.map(str::to_string),
            from_addr: m.from_addr.map(str::to_string),
            parsed_status: m.parsed_status.to_string(),
            event: codec::compress(m.event_message.as_bytes(), dictionary).context("compressing the event")?,
            event_codec,
            raw_inline: m.raw_inline,
            event_type: m.event_type,
            not_sent: m.not_sent.clone(),
            placement,
            contents: if placement == Placement::Inline {
                contents::rows(m.raw, m.attachments.iter().map(|a| a.bytes)).context("compressing the message")?
            } else {
                Vec::new()
            },
            attachments: m
                .attachments
                .iter()
                .map(|a| {
                    (
                        a.filename.map(str::to_string),
                        a.content_type.to_string(),
                        a.bytes.len() as i64,
                        a.sha256.to_string(),
                    )
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
                    sync: f.sync,
                    ordered: f.ordered,
                })
                .collect(),
            streams: m.streams.iter().map(|s| (s.clone(), crate::ids::new_id("evt"))).collect(),
        })
    }
}

/// The message, its attachments and one delivery per endpoint (each with its own event id).
/// A new message is a promise: its batch waits for the disk.
impl Work for Row {
    fn write(&self, tx: &rusqlite::Connection) -> anyhow::Result<()> {
        insert_rows(tx, self)
    }
    fn is_promise(&self) -> bool {
        true
    }
    fn is_spooled(&self) -> bool {
        self.placement == Placement::Spooled
    }
    fn streams(&self) -> bool {
        !self.streams.is_empty()
    }
}

fn insert_rows(tx: &rusqlite::Connection, m: &Row) -> anyhow::Result<()> {
    let keep_files = m.placement != Placement::RecordOnly;
    let disposition = match (m.deliveries.is_empty(), keep_files, &m.not_sent) {
        (false, _, _) => "queued".to_string(),
        (true, true, _) if !m.streams.is_empty() => "streamed".to_string(),
        (true, true, Some(why)) => format!("stored: {why}"),
        (true, true, None) => "stored".to_string(),
        (true, false, _) => "dropped".to_string(),
    };
    tx.prepare_cached(
        "INSERT INTO messages (id, received_at, client_ip, helo, mail_from, rcpt_to, size, sha256, subject,
             from_addr, parsed_status, event_message, raw_inline, type, disposition, files_removed_at, event_codec)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?
    .execute(params![
        m.id,
        m.received_at,
        m.client_ip,
        m.helo,
        m.mail_from,
        m.rcpt_to,
        m.size,
        m.sha256,
        m.subject,
        m.from_addr,
        m.parsed_status,
        m.event,
        m.raw_inline,
        m.event_type.as_str(),
        disposition,
        (!keep_files).then_some(m.received_at),
        m.event_codec as i64
    ])?;
    for (idx, (filename, content_type, size, sha256)) in m.attachments.iter().enumerate() {
        tx.prepare_cached(
            "INSERT INTO attachments (message_id, idx, filename, content_type, size, sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![m.id, idx as i64, filename, content_type, size, sha256])?;
    }
    contents::insert(tx, &m.id, &m.contents)?;
    for d in &m.deliveries {
        tx.prepare_cached(
            "INSERT INTO deliveries (id, message_id, event_id, endpoint, status, next_attempt_at, in_flight, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?7)",
        )?
        .execute(params![d.id, m.id, d.event_id, d.endpoint, d.due, d.sync, m.received_at])?;
    }
    for (stream, event_id) in &m.streams {
        tx.prepare_cached(
            "INSERT INTO stream_events (stream, event_id, message_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![stream, event_id, m.id, m.received_at])?;
    }
    Ok(())
}

impl Sqlite {
    /// The durable hand-off: one transaction with the message, its bytes (or, for a large one, after
    /// its files are fsync'd) and its deliveries (each with its own event id). Returns only once
    /// all of it is on disk, with the deliveries due at once (not a session's sync ones, nor a fifo
    /// endpoint's) already
    /// claimed for the caller: it attempts them (see `deliver::Deliverer::hand_off`) or gives them
    /// back with `unclaim`. That spares the scheduler a query of the queue for every new message.
    pub fn ingest(&self, m: &NewMessage<'_>) -> anyhow::Result<Vec<Delivery>> {
        if Placement::of(m.keep_files, m.raw.len()) != Placement::Spooled {
            return self.insert_message(m);
        }
        spool::write_synced(&self.spool_dir, m.id, m.raw).context("writing the raw message to the spool")?;
        let bytes: Vec<&[u8]> = m.attachments.iter().map(|a| a.bytes).collect();
        let result = spool::write_attachments(&self.attachment_dir, m.id, &bytes)
            .context("writing attachments")
            .and_then(|()| self.insert_message(m));
        if result.is_err() {
            spool::discard(&self.spool_dir, &self.attachment_dir, m.id);
        }
        result
    }

    fn insert_message(&self, m: &NewMessage<'_>) -> anyhow::Result<Vec<Delivery>> {
        let row = Row::new(m)?;
        let now: Vec<Delivery> = row
            .deliveries
            .iter()
            // A fifo endpoint's delivery may have older ones pending: only the queue knows its turn.
            .filter(|d| !d.sync && !d.ordered && d.due <= m.received_at)
            .map(|d| Delivery {
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
        // Claimed before the rows exist, so no claim of the queue ever sees them unclaimed.
        self.claimed().extend(now.iter().map(|d| d.id.clone()));
        let committed = self.commit(row).context("storing the message");
        if committed.is_err() {
            self.unclaim(&now);
        }
        committed.map(|()| now)
    }

    /// Removes a message that was stored but never acknowledged (a sync delivery failed).
    pub fn withdraw(&self, message_id: &str) -> anyhow::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        delete_message_rows(&tx, message_id)?;
        tx.commit()?;
        spool::discard(&self.spool_dir, &self.attachment_dir, message_id);
        Ok(())
    }
}

/// Every row of one message: attempts, deliveries, attachments, its bytes, the message.
pub(super) fn delete_message_rows(tx: &rusqlite::Transaction<'_>, message_id: &str) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE message_id = ?1)",
        [message_id],
    )?;
    tx.execute("DELETE FROM deliveries WHERE message_id = ?1", [message_id])?;
    tx.execute("DELETE FROM stream_events WHERE message_id = ?1", [message_id])?;
    tx.execute("DELETE FROM attachments WHERE message_id = ?1", [message_id])?;
    tx.execute("DELETE FROM contents WHERE message_id = ?1", [message_id])?;
    tx.execute("DELETE FROM messages WHERE id = ?1", [message_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::store::sqlite::Sqlite;
    use crate::store::sqlite::tests::{due, message};

    #[test]
    fn ingest_hands_over_the_deliveries_due_now_already_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path()).unwrap();
        let mut fifo = due("fifo", 1_000, false);
        fifo.ordered = true;
        let eps = [due("now", 1_000, false), due("later", 9_000, false), due("sync", 1_000, true), fifo];
        let handed = store.ingest(&message("msg_1", 1_000, &[], &eps)).unwrap();
        assert_eq!(handed.iter().map(|d| d.endpoint.as_str()).collect::<Vec<_>>(), ["now"]);
        let stored = store.delivery(&handed[0].id).unwrap().expect("the handed delivery is a committed row");
        assert_eq!((stored.event_id.as_str(), stored.status.as_str()), (handed[0].event_id.as_str(), "pending"));

        let any = |_: &str| 10;
        let claimed = store.claim_due(10_000, 10, &any, &[]).unwrap();
        let mut claimed: Vec<_> = claimed.iter().map(|d| d.endpoint.as_str()).collect();
        claimed.sort();
        assert_eq!(claimed, ["fifo", "later"], "handed is claimed; the fifo one waits in the queue");
        store.unclaim(&handed);
        let again = store.claim_due(10_000, 10, &any, &[]).unwrap();
        assert_eq!(again.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), [handed[0].id.as_str()]);
    }
}
