//! The store: `data_dir/mxhook.db` (SQLite, WAL) plus the spool for large messages (contents.rs). It
//! is the queue between ingest
//! and delivery (Postfix's hand-off): one transaction records a message and its deliveries, the
//! scheduler claims due deliveries from it, and the CLI reads and edits it while `serve` runs.

mod commit;
mod contents;
mod retention;
pub mod spool;

pub use contents::{Content, INLINE_MAX};
pub use retention::Purged;

use commit::{Queued, Work};

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

use crate::mail::{DeliveryStatus, NextState};
use crate::time::now_ms;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS messages (
    id            TEXT PRIMARY KEY,
    received_at   INTEGER NOT NULL,
    client_ip     TEXT NOT NULL,
    helo          TEXT NOT NULL,
    mail_from     TEXT NOT NULL,
    rcpt_to       TEXT NOT NULL,   -- JSON array
    size          INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    subject       TEXT,
    from_addr     TEXT,
    parsed_status TEXT NOT NULL,
    event_message TEXT NOT NULL,   -- the event's `message` object, JSON, built once at ingest
    raw_inline    INTEGER NOT NULL DEFAULT 0,  -- the event has raw.base64, left out of event_message here
    files_removed_at INTEGER,      -- retention deleted the raw message and attachments
    disposition   TEXT NOT NULL DEFAULT 'queued'  -- queued (has deliveries) | stored | dropped
);
CREATE INDEX IF NOT EXISTS messages_received ON messages (received_at);
CREATE TABLE IF NOT EXISTS attachments (
    message_id   TEXT NOT NULL REFERENCES messages(id),
    idx          INTEGER NOT NULL,
    filename     TEXT,             -- the sender's name for it: shown, never used as a path
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    PRIMARY KEY (message_id, idx)
);
CREATE TABLE IF NOT EXISTS deliveries (
    id              TEXT PRIMARY KEY,
    message_id      TEXT NOT NULL REFERENCES messages(id),
    event_id        TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    step            INTEGER NOT NULL DEFAULT 0,  -- index of the next scheduled attempt in the endpoint's retry list
    retry_requested_at INTEGER,                  -- the CLI asked for an attempt now (it does not use up a step)
    in_flight       INTEGER NOT NULL DEFAULT 0,  -- claimed by a session for its sync attempt; cleared on start
    next_attempt_at INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
-- Claiming walks this per endpoint (first attempts, then retries, each by due time): it reads only
-- the rows it takes, however large a busy or dead endpoint's backlog is.
CREATE INDEX IF NOT EXISTS deliveries_claim ON deliveries (status, in_flight, endpoint, (attempts > 0), next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_message ON deliveries (message_id);
CREATE TABLE IF NOT EXISTS attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id   TEXT NOT NULL REFERENCES deliveries(id),
    attempt       INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    http_status   INTEGER,
    error         TEXT,
    response_body TEXT
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id);
-- The bytes of messages up to INLINE_MAX: the raw message (part -1) and each decoded attachment
-- (part = its idx). Larger messages keep files in spool/ and attachments/ instead.
CREATE TABLE IF NOT EXISTS contents (
    message_id TEXT NOT NULL,
    part       INTEGER NOT NULL,
    data       BLOB NOT NULL,
    PRIMARY KEY (message_id, part)
);
"#;

pub struct Store {
    /// The connection for ingest and the CLI's edits (`synchronous=FULL`). Its mutex is also the
    /// process's write lock: SQLite has one writer anyway, and a mutex is cheaper and clearer than
    /// SQLITE_BUSY retries between our own threads.
    conn: Mutex<Connection>,
    /// The delivery side's connection, for reads: claims (claim_due), the event per attempt, the
    /// next due time, links. They do not wait for a group commit in progress.
    deliver: Mutex<Connection>,
    /// Messages and attempt outcomes waiting for the next group commit (commit.rs).
    queue: Mutex<Vec<Queued>>,
    /// Deliveries this process's scheduler has claimed and not yet recorded (see claim_due).
    claimed: Mutex<HashSet<String>>,
    spool_dir: PathBuf,
    attachment_dir: PathBuf,
    db_path: PathBuf,
}

/// One delivery to create for a new message: its destination (`Destination::key`), when its first
/// attempt is due, and whether the session makes that attempt itself (a `sync` route).
#[derive(Debug, Clone)]
pub struct FirstAttempt {
    pub endpoint: String,
    pub due: i64,
    pub sync: bool,
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
    pub raw: &'a [u8],
    /// False when every route dropped the message: only the record is kept.
    pub keep_files: bool,
    pub attachments: &'a [NewAttachment<'a>],
    /// Each endpoint to deliver to, with when its first attempt is due, and whether the
    /// session claims it for an attempt of its own (sync mode).
    pub endpoints: &'a [FirstAttempt],
}

/// A message's rows as queued for the group commit (owned: another session's thread writes them).
struct Row {
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
    keep_files: bool,
    /// The bytes of a small message, kept in its transaction (contents.rs); empty when its files
    /// are in the spool, or when nothing is kept.
    contents: Vec<(i64, Vec<u8>)>,
    /// (filename, content_type, size, sha256)
    attachments: Vec<(Option<String>, String, i64, String)>,
    deliveries: Vec<NewDelivery>,
}

/// A delivery row to insert, its ids made before the commit so they can be handed on.
struct NewDelivery {
    id: String,
    event_id: String,
    endpoint: String,
    due: i64,
    /// A session's own sync attempt (`in_flight` set in the row).
    sync: bool,
}

impl From<&NewMessage<'_>> for Row {
    fn from(m: &NewMessage<'_>) -> Self {
        Row {
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
            event_message: m.event_message.to_string(),
            raw_inline: m.raw_inline,
            keep_files: m.keep_files,
            contents: if m.keep_files && m.raw.len() <= INLINE_MAX {
                contents::rows(m.raw, m.attachments.iter().map(|a| a.bytes))
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
                })
                .collect(),
        }
    }
}

/// The message, its attachments and one delivery per endpoint (each with its own event id).
fn insert_rows(tx: &rusqlite::Connection, m: &Row) -> anyhow::Result<()> {
    let disposition = match (m.deliveries.is_empty(), m.keep_files) {
        (false, _) => "queued",
        (true, true) => "stored",
        (true, false) => "dropped",
    };
    tx.prepare_cached(&format!(
        "INSERT INTO messages ({MESSAGE_COLS}, disposition, files_removed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    ))?
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
        m.event_message,
        m.raw_inline,
        disposition,
        (!m.keep_files).then_some(m.received_at)
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
    Ok(())
}

/// A finished attempt as queued for the group commit.
struct AttemptRecord {
    delivery_id: String,
    /// The delivery's `retry_requested_at` when it was claimed: a CLI request made since wins.
    retry_requested_at: Option<i64>,
    step: i64,
    attempt: Attempt,
    next: NextState,
}

/// The attempt's row, and the delivery moved on to its next state.
fn record_attempt(tx: &rusqlite::Connection, r: &AttemptRecord) -> anyhow::Result<()> {
    let a = &r.attempt;
    tx.prepare_cached(
        "INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, http_status, error, response_body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        r.delivery_id,
        a.attempt,
        a.started_at,
        a.duration_ms,
        a.http_status,
        a.error,
        a.response_body
    ])?;
    let requested: Option<i64> = tx
        .prepare_cached("SELECT retry_requested_at FROM deliveries WHERE id = ?1")?
        .query_row([&r.delivery_id], |row| row.get(0))?;
    let (status, step, at, keep_request) = if requested != r.retry_requested_at {
        // The CLI asked for another attempt while this one was in flight: honour it.
        (DeliveryStatus::Pending, r.step, requested, requested)
    } else {
        match r.next {
            NextState::Succeeded => (r.next.status(), r.step, None, None),
            NextState::Retry { at, step } => (r.next.status(), step, Some(at), None),
            NextState::Failed { step } => (r.next.status(), step, None, None),
        }
    };
    tx.prepare_cached(
        "UPDATE deliveries SET status = ?2, step = ?3, next_attempt_at = ?4, retry_requested_at = ?5,
                attempts = ?6, last_status = ?7, last_error = ?8, in_flight = 0, updated_at = ?9
         WHERE id = ?1",
    )?
    .execute(params![
        r.delivery_id,
        status.as_str(),
        step,
        at,
        keep_request,
        a.attempt,
        a.http_status,
        a.error,
        now_ms()
    ])?;
    Ok(())
}

pub struct NewAttachment<'a> {
    pub filename: Option<&'a str>,
    pub content_type: &'a str,
    pub sha256: &'a str,
    pub bytes: &'a [u8],
}

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
pub struct Attempt {
    pub attempt: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub http_status: Option<i64>,
    pub error: Option<String>,
    pub response_body: Option<String>,
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
    /// The event has `raw.base64`, which `event_message` leaves out (see `parse::EventJson`).
    pub raw_inline: bool,
    /// `queued` (has deliveries), `stored` (kept, nothing sent) or `dropped` (record only).
    pub disposition: String,
}

const DELIVERY_COLS: &str = "id, message_id, event_id, endpoint, status, attempts, step, retry_requested_at, next_attempt_at, last_status, last_error, created_at";
const MESSAGE_COLS: &str = "id, received_at, client_ip, helo, mail_from, rcpt_to, size, sha256, subject, from_addr, parsed_status, event_message, raw_inline";

impl Store {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Store> {
        let spool_dir = data_dir.join("spool");
        let attachment_dir = data_dir.join("attachments");
        for dir in [&spool_dir, &attachment_dir] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let db = data_dir.join("mxhook.db");
        let conn = Connection::open(&db).with_context(|| format!("opening {}", db.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "{} cannot use WAL (got {mode})", db.display());
        // FULL: a committed transaction is on disk before COMMIT returns; that is what a 250 promises.
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;")?;
        conn.execute_batch(SCHEMA).with_context(|| format!("creating tables in {}", db.display()))?;
        migrate(&conn).with_context(|| format!("upgrading the tables in {}", db.display()))?;
        let deliver = Connection::open(&db).with_context(|| format!("opening {}", db.display()))?;
        deliver.busy_timeout(Duration::from_secs(10))?;
        deliver.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
        Ok(Store {
            conn: Mutex::new(conn),
            deliver: Mutex::new(deliver),
            queue: Mutex::new(Vec::new()),
            claimed: Mutex::new(HashSet::new()),
            spool_dir,
            attachment_dir,
            db_path: db,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll back),
        // so a poisoned mutex is still safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The delivery connection, for reads.
    fn deliver_conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.deliver.lock().unwrap_or_else(|p| p.into_inner())
    }

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

    /// The durable hand-off: one transaction with the message, its bytes (or, for a large one, after
    /// its files are fsync'd) and its deliveries (each with its own event id). Returns only once
    /// all of it is on disk, with the deliveries due at once (not a session's sync ones) already
    /// claimed for the caller: it attempts them (see `deliver::Deliverer::hand_off`) or gives them
    /// back with `unclaim`. That spares the scheduler a query of the queue for every new message.
    pub fn ingest(&self, m: &NewMessage<'_>) -> anyhow::Result<Vec<Delivery>> {
        if !m.keep_files || m.raw.len() <= INLINE_MAX {
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
        let row = Row::from(m);
        let now: Vec<Delivery> = row
            .deliveries
            .iter()
            .filter(|d| !d.sync && d.due <= m.received_at)
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
        let committed = self.commit(Work::Message(row)).context("storing the message");
        if committed.is_err() {
            self.unclaim(&now);
        }
        committed.map(|()| now)
    }

    /// Gives back deliveries claimed but not attempted: the scheduler's next claim takes them.
    pub fn unclaim(&self, deliveries: &[Delivery]) {
        self.forget(deliveries.iter().map(|d| &d.id));
    }

    /// Takes deliveries out of the in-memory claims.
    fn forget<'a>(&self, ids: impl Iterator<Item = &'a String>) {
        let mut claimed = self.claimed();
        ids.for_each(|id| {
            claimed.remove(id);
        });
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

    /// Deliveries a crash left in flight go back to the queue (at-least-once).
    pub fn release_in_flight(&self) -> anyhow::Result<usize> {
        Ok(self.conn().execute("UPDATE deliveries SET in_flight = 0 WHERE in_flight = 1", [])?)
    }

    /// Claims up to `limit` due deliveries for this process's scheduler.
    /// First attempts go before retries (a backlog of retries must not starve fresh mail), and
    /// no endpoint gets more than `room(endpoint)` (what its concurrency leaves free). Each
    /// endpoint's due rows are read from the `deliveries_claim` index, so a busy endpoint's backlog
    /// costs nothing to skip.
    ///
    /// A claim is a read: what is in flight is kept in memory (`claimed`), not written, so claiming
    /// never waits for a group commit. The set's lock is held across the read, and an attempt leaves
    /// the set only after its outcome has committed, so a claim sees either the delivery in the set
    /// or its new state, never a finished attempt as still due. After a crash nothing is claimed.
    pub fn claim_due(&self, now: i64, limit: usize, room: &dyn Fn(&str) -> usize) -> anyhow::Result<Vec<Delivery>> {
        let mut claimed = self.claimed();
        let mut conn = self.deliver_conn();
        // One snapshot for the whole claim; `in_flight` marks only a session's own sync attempt.
        let tx = conn.transaction()?;
        let mut endpoints = Vec::new();
        let mut next_endpoint = tx.prepare_cached(
            "SELECT MIN(endpoint) FROM deliveries WHERE status = 'pending' AND in_flight = 0 AND endpoint > ?1",
        )?;
        while let Some(e) = next_endpoint.query_row([endpoints.last().unwrap_or(&String::new())], |r| r.get(0))? {
            endpoints.push(e);
        }
        drop(next_endpoint);
        // Up to `limit` candidates from each endpoint, then the `limit` first in claim order. Rows
        // in flight are still pending: read past as many as are claimed.
        let mut candidates: Vec<(bool, i64, i64)> = Vec::new();
        let mut due = tx.prepare_cached(
            "SELECT attempts > 0, next_attempt_at, rowid, id FROM deliveries INDEXED BY deliveries_claim
             WHERE status = 'pending' AND in_flight = 0 AND endpoint = ?1 AND (attempts > 0) = ?2
               AND next_attempt_at <= ?3
             ORDER BY next_attempt_at LIMIT ?4",
        )?;
        for e in &endpoints {
            let room = room(e).min(limit);
            let mut mine: Vec<(bool, i64, i64)> = Vec::new();
            for retry in [false, true] {
                if mine.len() >= room {
                    break;
                }
                let rows = due.query_map(params![e, retry, now, (room - mine.len() + claimed.len()) as i64], |r| {
                    Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get::<_, String>(3)?))
                })?;
                for row in rows {
                    let (candidate, id) = row?;
                    if mine.len() < room && !claimed.contains(&id) {
                        mine.push(candidate);
                    }
                }
            }
            candidates.extend(mine);
        }
        drop(due);
        candidates.sort_unstable();
        candidates.truncate(limit);
        let mut read = tx.prepare_cached(&format!("SELECT {DELIVERY_COLS} FROM deliveries WHERE rowid = ?1"))?;
        let taken = candidates
            .iter()
            .map(|(_, _, rowid)| read.query_row([rowid], delivery_row))
            .collect::<Result<Vec<_>, _>>()?;
        drop(read);
        tx.commit()?;
        claimed.extend(taken.iter().map(|d| d.id.clone()));
        Ok(taken)
    }

    fn claimed(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.claimed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts claimed deliveries back in the queue (their outcome could not be recorded: they will be
    /// attempted again, which at-least-once allows). It is a write on purpose: while the store
    /// cannot record outcomes it fails, and the deliveries wait instead of being attempted again
    /// and again.
    pub fn release(&self, ids: &[String]) -> anyhow::Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE deliveries SET in_flight = 0 WHERE id IN (SELECT value FROM json_each(?1))",
            [serde_json::to_string(ids)?],
        )?;
        drop(conn);
        self.forget(ids.iter());
        Ok(())
    }

    /// When the next pending delivery is due (None: nothing is waiting).
    pub fn next_due(&self) -> anyhow::Result<Option<i64>> {
        let claimed = serde_json::to_string(&*self.claimed())?;
        let conn = self.deliver_conn();
        Ok(conn.query_row(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending' AND in_flight = 0
               AND id NOT IN (SELECT value FROM json_each(?1))",
            [claimed],
            |r| r.get(0),
        )?)
    }

    /// Records one attempt and moves the delivery on, in the next group commit.
    pub fn finish_attempt(&self, d: &Delivery, a: &Attempt, next: &NextState) -> anyhow::Result<()> {
        let record = AttemptRecord {
            delivery_id: d.id.clone(),
            retry_requested_at: d.retry_requested_at,
            step: d.step,
            attempt: a.clone(),
            next: next.clone(),
        };
        self.commit(Work::Attempt(record)).context("recording a delivery attempt")?;
        // Only now may a claim see it again (see claim_due).
        self.claimed().remove(&d.id);
        Ok(())
    }

    /// Asks for an attempt now, keeping the event id. Returns false if the delivery does not exist.
    pub fn request_retry(&self, delivery_id: &str) -> anyhow::Result<bool> {
        let now = now_ms();
        let n = self.conn().execute(
            "UPDATE deliveries SET status = 'pending', retry_requested_at = ?2, next_attempt_at = ?2, updated_at = ?2
             WHERE id = ?1",
            params![delivery_id, now],
        )?;
        Ok(n == 1)
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

    /// The deliveries of the messages `messages` lists down to (and with) the one received at
    /// `received_at` with id `id`, in one read: the CLI says from them what became of each message
    /// (messages that arrived since add rows, never take any away).
    pub fn deliveries_since(&self, received_at: i64, id: &str) -> anyhow::Result<Vec<Delivery>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE message_id IN
             (SELECT id FROM messages WHERE (received_at, id) >= (?1, ?2)) ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map(params![received_at, id], delivery_row)?;
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

    pub fn messages(&self, limit: usize) -> anyhow::Result<Vec<MessageRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {MESSAGE_COLS}, disposition FROM messages ORDER BY received_at DESC, id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit as i64], message_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn message(&self, id: &str) -> anyhow::Result<Option<MessageRow>> {
        let conn = self.deliver_conn();
        let sql = format!("SELECT {MESSAGE_COLS}, disposition FROM messages WHERE id = ?1");
        Ok(conn.prepare_cached(&sql)?.query_row([id], message_row).optional()?)
    }

    /// Pending deliveries and when the oldest of them was created.
    pub fn queue_stats(&self) -> anyhow::Result<(i64, Option<i64>)> {
        let conn = self.conn();
        Ok(conn.query_row("SELECT COUNT(*), MIN(created_at) FROM deliveries WHERE status = 'pending'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?)
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

/// Brings a store made by an earlier version up to SCHEMA (CREATE TABLE IF NOT EXISTS leaves an
/// existing table as it was). Each step is idempotent.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_raw_inline: bool =
        conn.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('messages') WHERE name = 'raw_inline'", [], |r| {
            r.get(0)
        })?;
    if !has_raw_inline {
        // Their event_message kept raw.base64 in full: 0 is right for every existing row.
        conn.execute_batch("ALTER TABLE messages ADD COLUMN raw_inline INTEGER NOT NULL DEFAULT 0")?;
    }
    Ok(())
}

/// Every row of one message: attempts, deliveries, attachments, its bytes, the message.
fn delete_message_rows(tx: &rusqlite::Transaction<'_>, message_id: &str) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE message_id = ?1)",
        [message_id],
    )?;
    tx.execute("DELETE FROM deliveries WHERE message_id = ?1", [message_id])?;
    tx.execute("DELETE FROM attachments WHERE message_id = ?1", [message_id])?;
    tx.execute("DELETE FROM contents WHERE message_id = ?1", [message_id])?;
    tx.execute("DELETE FROM messages WHERE id = ?1", [message_id])?;
    Ok(())
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

fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
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

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
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
        event_message: r.get(11)?,
        raw_inline: r.get(12)?,
        disposition: r.get(13)?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const RCPT: &[String] = &[];

    pub(crate) fn due(endpoint: &str, due: i64, sync: bool) -> FirstAttempt {
        FirstAttempt { endpoint: endpoint.to_string(), due, sync }
    }

    /// A small message received at `received_at`, due to `endpoints`.
    fn message<'a>(
        id: &'a str,
        received_at: i64,
        attachments: &'a [NewAttachment<'a>],
        endpoints: &'a [FirstAttempt],
    ) -> NewMessage<'a> {
        NewMessage {
            id,
            received_at,
            client_ip: "127.0.0.1",
            helo: "h",
            mail_from: "",
            rcpt_to: RCPT,
            sha256: "x",
            subject: None,
            from_addr: None,
            parsed_status: "complete",
            event_message: "{}",
            raw_inline: false,
            raw: b"Subject: x\r\n\r\nhi\r\n",
            keep_files: true,
            attachments,
            endpoints,
        }
    }

    /// Stores a small message with one attachment, received at `received_at`, due to `endpoints`.
    pub(crate) fn add(store: &Store, id: &str, received_at: i64, endpoints: &[&str]) {
        let eps: Vec<_> = endpoints.iter().map(|e| due(e, received_at, false)).collect();
        let att = [NewAttachment { filename: Some("a.txt"), content_type: "text/plain", sha256: "x", bytes: b"hi" }];
        let handed = store.ingest(&message(id, received_at, &att, &eps)).unwrap();
        // No scheduler here: the deliveries go back to the queue for these tests' claims.
        store.unclaim(&handed);
    }

    #[test]
    fn ingest_hands_over_the_deliveries_due_now_already_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let eps = [due("now", 1_000, false), due("later", 9_000, false), due("sync", 1_000, true)];
        let handed = store.ingest(&message("msg_1", 1_000, &[], &eps)).unwrap();
        assert_eq!(handed.iter().map(|d| d.endpoint.as_str()).collect::<Vec<_>>(), ["now"]);
        let stored = store.delivery(&handed[0].id).unwrap().expect("the handed delivery is a committed row");
        assert_eq!((stored.event_id.as_str(), stored.status.as_str()), (handed[0].event_id.as_str(), "pending"));

        let any = |_: &str| 10;
        assert!(store.claim_due(10_000, 10, &any).unwrap().iter().all(|d| d.endpoint == "later"), "handed is claimed");
        store.unclaim(&handed);
        let again = store.claim_due(10_000, 10, &any).unwrap();
        assert_eq!(again.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), [handed[0].id.as_str()]);
    }

    #[test]
    fn a_store_from_before_raw_inline_is_upgraded_and_its_events_read_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let line = "    raw_inline    INTEGER NOT NULL DEFAULT 0,  -- the event has raw.base64, left out of event_message here\n";
        assert!(SCHEMA.contains(line));
        let old = Connection::open(dir.path().join("mxhook.db")).unwrap();
        old.execute_batch(&SCHEMA.replace(line, "")).unwrap();
        old.execute(
            "INSERT INTO messages (id, received_at, client_ip, helo, mail_from, rcpt_to, size, sha256, parsed_status, event_message)
             VALUES ('msg_old', 1, '127.0.0.1', 'h', '', '[]', 2, 'x', 'complete', '{\"raw\":{\"base64\":\"aGk=\"}}')",
            [],
        )
        .unwrap();
        drop(old);
        for _ in 0..2 {
            let store = Store::open(dir.path()).unwrap();
            let m = store.message("msg_old").unwrap().unwrap();
            assert!(!m.raw_inline, "rows from before keep raw.base64 in their event");
            assert_eq!(m.event_message, r#"{"raw":{"base64":"aGk="}}"#);
        }
    }

    #[test]
    fn an_item_of_a_group_commit_that_fails_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let eps = [due("e", 1_000, false)];
        let record = |delivery_id: &str| AttemptRecord {
            delivery_id: delivery_id.into(),
            retry_requested_at: None,
            step: 0,
            attempt: Attempt {
                attempt: 1,
                started_at: 1,
                duration_ms: 1,
                http_status: Some(200),
                error: None,
                response_body: None,
            },
            next: NextState::Succeeded,
        };
        let batch = [
            commit::Work::Message(Row::from(&message("msg_a", 1_000, &[], &eps))),
            commit::Work::Attempt(record("dlv_gone")),
            commit::Work::Message(Row::from(&message("msg_b", 1_000, &[], &eps))),
        ];
        let each = commit::write_batch(&mut store.conn(), batch.iter()).unwrap();
        assert!(each[0].is_ok() && each[2].is_ok(), "{each:?}");
        assert!(each[1].as_ref().is_err_and(|e| e.contains("FOREIGN KEY")), "{each:?}");
        for id in ["msg_a", "msg_b"] {
            assert!(store.message(id).unwrap().is_some(), "{id} was committed");
            assert_eq!(store.deliveries(None, Some(id)).unwrap().len(), 1);
        }
        assert!(store.attempts("dlv_gone").unwrap().is_empty());

        // A batch of attempts only is committed without waiting for the disk, then FULL is back.
        let d = &store.deliveries(None, Some("msg_a")).unwrap()[0];
        let each = commit::write_batch(&mut store.conn(), [commit::Work::Attempt(record(&d.id))].iter()).unwrap();
        assert!(each[0].is_ok(), "{each:?}");
        assert_eq!(store.attempts(&d.id).unwrap().len(), 1);
        let sync: i64 = store.conn().query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "synchronous is FULL again");
    }

    #[test]
    fn fresh_deliveries_are_claimed_before_retries_and_busy_endpoints_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        add(&store, "msg_retry", 1_000, &["dead"]);
        store.conn().execute("UPDATE deliveries SET attempts = 3, next_attempt_at = 10", []).unwrap();
        add(&store, "msg_fresh", 1_000, &["live"]);
        add(&store, "msg_dead2", 1_000, &["dead"]);

        let any = |_: &str| 10;
        let first = store.claim_due(5_000, 1, &any).unwrap();
        assert_eq!(first[0].message_id, "msg_fresh", "a first attempt goes before an older retry");
        let next = store.claim_due(5_000, 10, &|e: &str| if e == "dead" { 0 } else { 10 }).unwrap();
        assert!(next.is_empty(), "the busy endpoint's deliveries wait: {next:?}");
        let one = store.claim_due(5_000, 10, &|_: &str| 1).unwrap();
        assert_eq!(one.len(), 1, "an endpoint gets no more than its room, however many slots are free");
        let rest = store.claim_due(5_000, 10, &any).unwrap();
        let mut ids: Vec<_> = one.iter().chain(&rest).map(|d| d.message_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, vec!["msg_dead2", "msg_retry"]);
    }
}
