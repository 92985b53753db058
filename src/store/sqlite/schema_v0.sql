-- The tables of a store at schema version 0 (before numbered versions), as mxhook made them:
-- the migration tests start from it.
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
