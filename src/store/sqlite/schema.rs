//! The tables (SCHEMA, run on every open: CREATE ... IF NOT EXISTS) and the numbered migrations
//! that bring a store made by an earlier version up to VERSION.

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
    type          TEXT NOT NULL DEFAULT 'email.received',  -- the event type (mail::EventType), decided at ingest
    event_codec   INTEGER NOT NULL DEFAULT 0  -- event_message is: 0 JSON text, 1 zstd, 2 zstd with the raw message as dictionary (codec.rs)
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
    codec      INTEGER NOT NULL DEFAULT 0,  -- 0 as received, 1 zstd (codec.rs)
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
/// 50 costs the same at a million messages as at a thousand). Made after the migrations, since they cover
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

/// The schema's version, kept in `PRAGMA user_version`. 0: every store made before versions were
/// numbered (its columns are brought up to date by `unnumbered`). A store of a newer version is
/// refused: this binary would misread what it does not know.
pub(super) const VERSION: i64 = 1;

/// Each numbered step, in order: `MIGRATIONS[n]` brings version n to n + 1. Idempotent, like the
/// unnumbered ones: a store made by an unreleased build may already have some of its columns.
const MIGRATIONS: [fn(&Connection) -> rusqlite::Result<()>; VERSION as usize] = [
    // 1: stored bytes and events are compressed (codec.rs); every existing row is as received.
    |conn| {
        add_column(conn, "contents", "codec", "INTEGER NOT NULL DEFAULT 0")?;
        add_column(conn, "messages", "event_codec", "INTEGER NOT NULL DEFAULT 0")
    },
];

/// Creates the tables of a new store at VERSION, or brings an existing one up to it. In one
/// IMMEDIATE transaction: `serve` and a CLI command opening an old store at once do not both
/// migrate it (the second waits, then finds it done).
pub(super) fn prepare(conn: &mut Connection) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let existing: bool =
        tx.query_row("SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'messages'", [], |r| {
            r.get(0)
        })?;
    let mut version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    anyhow::ensure!(
        version <= VERSION,
        "the store is of schema version {version}, made by a newer mxhook; this one knows up to {VERSION}"
    );
    // Tables the store lacks are made as they are now; existing ones are left as they were.
    tx.execute_batch(SCHEMA)?;
    if existing {
        unnumbered(&tx)?;
        while version < VERSION {
            MIGRATIONS[version as usize](&tx)?;
            version += 1;
        }
    }
    tx.execute_batch(INDEXES)?;
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()?;
    Ok(())
}

fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    conn.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2", [table, column], |r| r.get(0))
}

fn add_column(conn: &Connection, table: &str, column: &str, definition: &str) -> rusqlite::Result<()> {
    if !has_column(conn, table, column)? {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"))?;
    }
    Ok(())
}

/// The steps from before schema versions: each brings a store made by an earlier version up to
/// version 0 (CREATE TABLE IF NOT EXISTS leaves an existing table as it was).
fn unnumbered(conn: &Connection) -> rusqlite::Result<()> {
    // Their event_message kept raw.base64 in full: 0 is right for every existing row.
    add_column(conn, "messages", "raw_inline", "INTEGER NOT NULL DEFAULT 0")?;
    // Before event types every event was `email.received`.
    add_column(conn, "messages", "type", "TEXT NOT NULL DEFAULT 'email.received'")
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use crate::store::sqlite::tests::message;
    use crate::store::sqlite::{Content, NewAttachment, Sqlite};

    /// The tables as mxhook made them before schema versions (and before compression).
    const V0: &str = include_str!("schema_v0.sql");

    fn old_store(dir: &std::path::Path, schema: &str) -> Connection {
        let old = Connection::open(dir.join("mxhook.db")).unwrap();
        old.execute_batch(schema).unwrap();
        old
    }

    #[test]
    fn a_store_from_before_raw_inline_is_upgraded_and_its_events_read_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let line = "    raw_inline    INTEGER NOT NULL DEFAULT 0,  -- the event has raw.base64, left out of event_message here\n";
        assert!(V0.contains(line));
        let old = old_store(dir.path(), &V0.replace(line, ""));
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
        assert!(V0.contains(disposition) && V0.contains(kind));
        let old = old_store(
            dir.path(),
            &V0.replace(kind, "").replace(disposition, "    disposition TEXT NOT NULL DEFAULT 'queued'\n"),
        );
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

    #[test]
    fn a_version_0_store_is_migrated_and_its_uncompressed_messages_read_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let raw = b"Subject: old\r\n\r\nkept as received\r\n";
        let event = r#"{"subject":"old","text":"kept as received\r\n"}"#;
        let old = old_store(dir.path(), V0);
        old.execute_batch(&format!(
            "INSERT INTO messages (id, received_at, client_ip, helo, mail_from, rcpt_to, size, sha256, parsed_status, event_message)
               VALUES ('msg_old', 1000, '127.0.0.1', 'h', '', '[]', {}, 'x', 'complete', '{event}');
             INSERT INTO attachments (message_id, idx, filename, content_type, size, sha256)
               VALUES ('msg_old', 0, 'a.txt', 'text/plain', 3, 'y');
             INSERT INTO contents (message_id, part, data) VALUES ('msg_old', -1, CAST('{}' AS BLOB)), ('msg_old', 0, X'616263');
             INSERT INTO stream_events (stream, event_id, message_id, created_at) VALUES ('s', 'evt_1', 'msg_old', 1000);",
            raw.len(),
            std::str::from_utf8(raw).unwrap(),
        ))
        .unwrap();
        drop(old);
        for _ in 0..2 {
            let store = Sqlite::open(dir.path()).unwrap();
            let version: i64 = store.conn().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
            assert_eq!(version, super::VERSION);
            assert_eq!(store.message("msg_old").unwrap().unwrap().event_message, event);
            assert_eq!(store.raw("msg_old").unwrap().as_deref(), Some(&raw[..]));
            assert!(matches!(store.content("msg_old", Some(0)).unwrap(), Content::Bytes(b) if b == b"abc"));
            let page = store.stream_read("s", 0, 10, None).unwrap();
            assert_eq!(page.items.iter().map(|i| i.message_json.as_str()).collect::<Vec<_>>(), [event]);
        }
        // New messages are stored compressed next to the old ones, and both read back.
        let store = Sqlite::open(dir.path()).unwrap();
        let att = [NewAttachment { filename: None, content_type: "text/plain", sha256: "z", bytes: b"new part" }];
        let mut m = message("msg_new", 2000, &att, &[]);
        m.event_message = r#"{"subject":"x","text":"hi\r\n"}"#;
        store.ingest(&m).unwrap();
        let codecs: (i64, i64) = store
            .conn()
            .query_row(
                "SELECT (SELECT event_codec FROM messages WHERE id = 'msg_new'),
                        (SELECT MIN(codec) FROM contents WHERE message_id = 'msg_new')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(codecs, (2, 1), "the event after its raw message, the bytes in zstd");
        assert_eq!(store.message("msg_new").unwrap().unwrap().event_message, m.event_message);
        assert_eq!(store.raw("msg_new").unwrap().as_deref(), Some(m.raw));
        assert!(matches!(store.content("msg_new", Some(0)).unwrap(), Content::Bytes(b) if b == b"new part"));
        // Retention takes the bytes of both; their records still read.
        assert_eq!(store.purge_files(10_000).unwrap(), 2);
        for (id, json) in [("msg_old", event), ("msg_new", m.event_message)] {
            assert!(matches!(store.content(id, None).unwrap(), Content::Removed), "{id}");
            assert_eq!(store.message(id).unwrap().unwrap().event_message, json, "{id}");
        }
    }

    #[test]
    fn a_store_of_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Sqlite::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join("mxhook.db")).unwrap();
        conn.pragma_update(None, "user_version", super::VERSION + 1).unwrap();
        drop(conn);
        let e = Sqlite::open(dir.path()).err().expect("refused");
        assert!(format!("{e:#}").contains("newer mxhook"), "{e:#}");
    }
}
