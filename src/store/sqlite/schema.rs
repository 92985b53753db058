//! The tables (SCHEMA, run on every open: CREATE ... IF NOT EXISTS) and the migrations that bring a
//! store made by an earlier version up to it.

use rusqlite::Connection;

pub(super) const SCHEMA: &str = r#"
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
    disposition   TEXT NOT NULL DEFAULT 'queued',  -- queued (has deliveries) | streamed (only streams) | stored[: why not sent] | dropped
    type          TEXT NOT NULL DEFAULT 'email.received'  -- the event type (mail::EventType), decided at ingest
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
-- A fifo endpoint's next delivery: its oldest pending one, in arrival order (created_at is the
-- message's received_at; rowid, the order they were stored, breaks ties within a millisecond).
CREATE INDEX IF NOT EXISTS deliveries_fifo ON deliveries (endpoint, created_at) WHERE status = 'pending';
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
-- The streams' logs: one row per event a stream keeps, in the transaction of its message. `cursor`
-- only grows (AUTOINCREMENT never reuses one) and commits in order (one writer), so a reader that
-- has seen cursor N has seen every earlier one of its stream.
CREATE TABLE IF NOT EXISTS stream_events (
    cursor     INTEGER PRIMARY KEY AUTOINCREMENT,
    stream     TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    message_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS stream_events_stream ON stream_events (stream, cursor);
CREATE INDEX IF NOT EXISTS stream_events_message ON stream_events (message_id);
-- A named consumer's place in a stream: every event up to `acked` is done.
CREATE TABLE IF NOT EXISTS stream_consumers (
    stream     TEXT NOT NULL,
    name       TEXT NOT NULL,
    acked      INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (stream, name)
);
-- Sender block and allow rules added with `mxhook senders` (the config file's are not copied here).
-- `rule` is the rule's canonical text; a rule is on one list at a time.
CREATE TABLE IF NOT EXISTS sender_rules (
    rule     TEXT PRIMARY KEY,
    list     TEXT NOT NULL CHECK (list IN ('block', 'allow')),
    added_at INTEGER NOT NULL
);
-- One row, counted up by every change to sender_rules: a running server reads this cheap number to
-- know when to read the rules again.
CREATE TABLE IF NOT EXISTS sender_rules_generation (generation INTEGER NOT NULL);
INSERT INTO sender_rules_generation (generation)
    SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM sender_rules_generation);
"#;

/// The listings' orders and retention's walks, so that each reads only the rows it returns (a page of
/// 50 costs the same at a million messages as at a thousand). Made after `migrate`, since they cover
/// columns it may have added; a store from before them gets them at its next open (building them
/// reads the tables once).
const INDEXES: &str = r#"
-- Messages of a type other than the common `email.received`, newest first (`--type email.bounced`):
-- partial, as few are; the query names its condition word for word, which lets SQLite use it.
CREATE INDEX IF NOT EXISTS messages_type ON messages (type, received_at) WHERE type <> 'email.received';
-- Messages whose bytes retention has yet to remove, oldest first.
CREATE INDEX IF NOT EXISTS messages_files ON messages (received_at) WHERE files_removed_at IS NULL;
-- Deliveries newest first (by their message's arrival), all of them or one state's (the queue, what
-- gave up, what went: any of them may be nearly all or nearly none of a million).
CREATE INDEX IF NOT EXISTS deliveries_created ON deliveries (created_at);
CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries (status, created_at);
-- One endpoint's, newest first (a quiet endpoint's few among a busy one's million).
CREATE INDEX IF NOT EXISTS deliveries_endpoint ON deliveries (endpoint, created_at);
"#;

/// Brings a store made by an earlier version up to SCHEMA (CREATE TABLE IF NOT EXISTS leaves an
/// existing table as it was). Each step is idempotent.
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_raw_inline: bool =
        conn.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('messages') WHERE name = 'raw_inline'", [], |r| {
            r.get(0)
        })?;
    if !has_raw_inline {
        // Their event_message kept raw.base64 in full: 0 is right for every existing row.
        conn.execute_batch("ALTER TABLE messages ADD COLUMN raw_inline INTEGER NOT NULL DEFAULT 0")?;
    }
    let has_type: bool =
        conn.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('messages') WHERE name = 'type'", [], |r| r.get(0))?;
    if !has_type {
        // Before event types every event was `email.received`.
        conn.execute_batch("ALTER TABLE messages ADD COLUMN type TEXT NOT NULL DEFAULT 'email.received'")?;
    }
    conn.execute_batch(INDEXES)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::SCHEMA;
    use crate::store::sqlite::Sqlite;

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
            let store = Sqlite::open(dir.path()).unwrap();
            let m = store.message("msg_old").unwrap().unwrap();
            assert!(!m.raw_inline, "rows from before keep raw.base64 in their event");
            assert_eq!(m.event_message, r#"{"raw":{"base64":"aGk="}}"#);
        }
    }

    #[test]
    fn a_store_from_before_event_types_reads_every_message_as_received() {
        let dir = tempfile::tempdir().unwrap();
        let (disposition, kind) = (
            "    disposition   TEXT NOT NULL DEFAULT 'queued',  -- queued (has deliveries) | streamed (only streams) | stored[: why not sent] | dropped\n",
            "    type          TEXT NOT NULL DEFAULT 'email.received'  -- the event type (mail::EventType), decided at ingest\n",
        );
        assert!(SCHEMA.contains(disposition) && SCHEMA.contains(kind));
        let old = Connection::open(dir.path().join("mxhook.db")).unwrap();
        old.execute_batch(
            &SCHEMA.replace(kind, "").replace(disposition, "    disposition TEXT NOT NULL DEFAULT 'queued'\n"),
        )
        .unwrap();
        old.execute(
            "INSERT INTO messages (id, received_at, client_ip, helo, mail_from, rcpt_to, size, sha256, parsed_status, event_message)
             VALUES ('msg_old', 1, '127.0.0.1', 'h', '', '[]', 2, 'x', 'complete', '{}')",
            [],
        )
        .unwrap();
        drop(old);
        for _ in 0..2 {
            let store = Sqlite::open(dir.path()).unwrap();
            let m = store.message("msg_old").unwrap().unwrap();
            assert_eq!(m.event_type, crate::mail::EventType::Received);
            assert_eq!(store.messages(10, Some(crate::mail::EventType::Bounced)).unwrap().len(), 0);
        }
    }
}
