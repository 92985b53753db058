//! The tables in PostgreSQL and the numbered migrations that make them. `mxhook_schema` records each
//! version applied; migrating holds a session advisory lock, so of several gateways starting at once
//! one migrates and the others wait and find it done. A database whose schema is newer than this
//! binary knows is refused (an older gateway must not write rows it does not understand).

use anyhow::Context;

/// The advisory lock key of migrations (any fixed number: the namespace of this application's locks
/// is its database).
const MIGRATION_LOCK: i64 = 0x6d78_686f_6f6b_0001;

/// Each migration, in order: version n is `MIGRATIONS[n - 1]`. Never edit one that has shipped: add
/// the next.
const MIGRATIONS: &[&str] = &[V1, V2];

/// The newest schema this binary knows.
pub(super) const LATEST: i32 = MIGRATIONS.len() as i32;

/// Times are milliseconds since the epoch (bigint), as in the SQLite store, so both backends share
/// the row types and the scheduler's clock.
const V1: &str = r#"
CREATE TABLE messages (
    id               text PRIMARY KEY,
    received_at      bigint NOT NULL,
    client_ip        text NOT NULL,
    helo             text NOT NULL,
    mail_from        text NOT NULL,
    rcpt_to          text NOT NULL,   -- JSON array
    size             bigint NOT NULL,
    sha256           text NOT NULL,
    subject          text,
    from_addr        text,
    parsed_status    text NOT NULL,
    event_message    text NOT NULL,   -- the event's `message` object, JSON, built once at ingest
    raw_inline       boolean NOT NULL DEFAULT false,
    files_removed_at bigint,
    disposition      text NOT NULL DEFAULT 'queued',
    type             text NOT NULL DEFAULT 'email.received'
);
CREATE INDEX messages_received ON messages (received_at, id);
CREATE TABLE attachments (
    message_id   text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    idx          integer NOT NULL,
    filename     text,
    content_type text NOT NULL,
    size         bigint NOT NULL,
    sha256       text NOT NULL,
    PRIMARY KEY (message_id, idx)
);
-- The bytes of every kept message (no spool: any gateway serves any link): the raw message (part -1)
-- and each decoded attachment (part = its idx), in chunks of at most 256 KiB, so neither writing nor
-- serving a 50 MB message holds it whole in one value.
CREATE TABLE contents (
    message_id text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    part       integer NOT NULL,
    chunk      integer NOT NULL,
    data       bytea NOT NULL,
    PRIMARY KEY (message_id, part, chunk)
);
-- A claim is a lease: `lease_owner` (a gateway's id for this run) holds the delivery until
-- `lease_until`; a gateway renews its leases while their attempts run, and once one has expired any
-- gateway may claim the delivery again (at-least-once, the same event id). `seq` is the order
-- deliveries were stored in, which breaks ties of created_at for a fifo endpoint.
CREATE TABLE deliveries (
    id                 text PRIMARY KEY,
    seq                bigserial NOT NULL,
    message_id         text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    event_id           text NOT NULL,
    endpoint           text NOT NULL,
    status             text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts           bigint NOT NULL DEFAULT 0,
    step               bigint NOT NULL DEFAULT 0,
    retry_requested_at bigint,
    next_attempt_at    bigint,
    last_status        bigint,
    last_error         text,
    created_at         bigint NOT NULL,
    updated_at         bigint NOT NULL,
    lease_owner        text,
    lease_until        bigint
);
CREATE INDEX deliveries_due ON deliveries (endpoint, (attempts > 0), next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_fifo ON deliveries (endpoint, created_at, seq) WHERE status = 'pending';
CREATE INDEX deliveries_message ON deliveries (message_id);
CREATE INDEX deliveries_leased ON deliveries (endpoint, lease_until) WHERE lease_owner IS NOT NULL;
CREATE TABLE attempts (
    id            bigserial PRIMARY KEY,
    delivery_id   text NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt       bigint NOT NULL,
    started_at    bigint NOT NULL,
    duration_ms   bigint NOT NULL,
    http_status   bigint,
    error         text,
    response_body text
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);
-- The streams' logs. Transactions that add events take an advisory lock first and hold it to their
-- commit, so cursors commit in order, as with SQLite's one writer: a reader that has seen cursor N
-- has seen every earlier one of its stream.
CREATE TABLE stream_events (
    cursor     bigserial PRIMARY KEY,
    stream     text NOT NULL,
    event_id   text NOT NULL,
    message_id text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    created_at bigint NOT NULL
);
CREATE INDEX stream_events_stream ON stream_events (stream, cursor);
CREATE INDEX stream_events_message ON stream_events (message_id);
CREATE TABLE stream_consumers (
    stream     text NOT NULL,
    name       text NOT NULL,
    acked      bigint NOT NULL DEFAULT 0,
    updated_at bigint NOT NULL,
    PRIMARY KEY (stream, name)
);
CREATE TABLE sender_rules (
    rule     text PRIMARY KEY,
    list     text NOT NULL CHECK (list IN ('block', 'allow')),
    added_at bigint NOT NULL
);
CREATE TABLE sender_rules_generation (generation bigint NOT NULL);
INSERT INTO sender_rules_generation (generation) VALUES (0);
-- The key that signs attachment and raw links: one for the cluster, so any gateway serves any link.
CREATE TABLE link_key (
    id  integer PRIMARY KEY CHECK (id = 1),
    key bytea NOT NULL
);
"#;

/// The listings' orders, retention's walk and the scheduler's next due time read off indexes, so that
/// each reads only the rows it returns, at a million messages as at a thousand (issue 21).
const V2: &str = r#"
CREATE INDEX deliveries_created ON deliveries (created_at, id);
CREATE INDEX deliveries_status ON deliveries (status, created_at, id);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint, created_at, id);
CREATE INDEX deliveries_next ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX messages_type ON messages (type, received_at, id);
CREATE INDEX messages_files ON messages (received_at, id) WHERE files_removed_at IS NULL;
"#;

/// Brings the database up to `LATEST`, one migration per transaction, under the migration lock.
/// Fails, changing nothing, when the database's schema is newer than `LATEST`.
pub(super) fn migrate(client: &mut postgres::Client) -> anyhow::Result<i32> {
    // Up to date already (the usual start): nothing to write, so a read-only database (a standby, a
    // primary being demoted) still opens, for the CLI's reads and a gateway that answers 451.
    if current_version(client)? == Some(LATEST) {
        return Ok(LATEST);
    }
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).context("taking the migration lock")?;
    let migrated = migrate_locked(client);
    // A session lock outlives a failed transaction: always give it back.
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    let version = migrated?;
    unlocked.context("giving back the migration lock")?;
    Ok(version)
}

/// The schema's version, None when no mxhook ever used this database.
fn current_version(client: &mut postgres::Client) -> anyhow::Result<Option<i32>> {
    let exists: bool = client.query_one("SELECT to_regclass('mxhook_schema') IS NOT NULL", &[])?.get(0);
    if !exists {
        return Ok(None);
    }
    Ok(Some(client.query_one("SELECT COALESCE(MAX(version), 0) FROM mxhook_schema", &[])?.get(0)))
}

fn migrate_locked(client: &mut postgres::Client) -> anyhow::Result<i32> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS mxhook_schema (
             version    integer PRIMARY KEY,
             applied_at bigint NOT NULL,
             applied_by text NOT NULL
         )",
    )?;
    let current: i32 = client.query_one("SELECT COALESCE(MAX(version), 0) FROM mxhook_schema", &[])?.get(0);
    anyhow::ensure!(
        current <= LATEST,
        "the database's schema is version {current}, newer than this mxhook {} knows (up to {LATEST}): \
         upgrade this gateway to the version the others run",
        env!("CARGO_PKG_VERSION")
    );
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i32 + 1;
        let mut tx = client.transaction()?;
        tx.batch_execute(sql).with_context(|| format!("applying schema version {version}"))?;
        tx.execute(
            "INSERT INTO mxhook_schema (version, applied_at, applied_by) VALUES ($1, $2, $3)",
            &[&version, &crate::time::now_ms(), &format!("mxhook {}", env!("CARGO_PKG_VERSION"))],
        )?;
        tx.commit().with_context(|| format!("committing schema version {version}"))?;
        tracing::info!(version, "PostgreSQL schema migrated");
    }
    Ok(LATEST)
}

#[cfg(test)]
mod tests {
    use super::LATEST;
    use crate::store::postgres::Postgres;
    use crate::store::postgres::tests::{cluster, database};

    #[test]
    fn gateways_starting_at_once_migrate_once_and_a_newer_schema_is_refused() {
        let url = database();
        let opened: Vec<_> = std::thread::scope(|s| {
            let starts: Vec<_> = (0..3).map(|_| s.spawn(|| Postgres::open(&url).map(|_| ()))).collect();
            starts.into_iter().map(|t| t.join().expect("no panic")).collect()
        });
        for o in &opened {
            assert!(o.is_ok(), "{o:?}");
        }
        let db = url.to_string().rsplit('/').next().unwrap().to_string();
        let versions = cluster().psql(&db, "SELECT string_agg(version::text, ',' ORDER BY version) FROM mxhook_schema");
        let all: Vec<String> = (1..=LATEST).map(|v| v.to_string()).collect();
        assert_eq!(versions.unwrap(), all.join(","), "each version applied once");
        Postgres::open(&url).expect("reopening changes nothing");

        let newer = LATEST + 1;
        cluster()
            .psql(&db, &format!("INSERT INTO mxhook_schema VALUES ({newer}, 0, 'mxhook from the future')"))
            .unwrap();
        let e = format!("{:#}", Postgres::open(&url).err().expect("a newer schema is refused"));
        assert!(e.contains(&format!("schema is version {newer}, newer than this mxhook")), "{e}");
        let free = cluster().psql(&db, &format!("SELECT pg_try_advisory_lock({})", super::MIGRATION_LOCK)).unwrap();
        assert_eq!(free, "t", "the refusal gave the migration lock back");
    }
}
