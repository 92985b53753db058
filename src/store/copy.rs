//! `mxhook store copy`: one host's SQLite store (`data_dir`) into an empty PostgreSQL database, so
//! that a gateway moves to the shared store keeping its mail: every message with its bytes (spooled
//! files streamed a chunk at a time, never read whole), deliveries with their state, attempts,
//! streams with their cursors and consumers, sender rules, and the link key (links sent before the
//! move keep working). One PostgreSQL transaction: a copy that fails leaves the database empty.
//! Then each table is counted on both sides, and the bytes too.
//!
//! The rows are read from one SQLite read transaction; the bytes through the SQLite store's own
//! `content` (whatever form it keeps them in). Stop the gateway first: mail taken while copying
//! would not be in the copy.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use rusqlite::OpenFlags;

use super::postgres::{ChunkWriter, Postgres, RAW};
use super::sqlite::Sqlite;
use super::{Content, DatabaseUrl};

/// What was copied, table by table: (table, rows in SQLite, rows in PostgreSQL after the commit).
pub struct CopyReport {
    pub tables: Vec<(&'static str, i64, i64)>,
}

impl CopyReport {
    /// The tables whose counts differ.
    pub fn mismatches(&self) -> Vec<&(&'static str, i64, i64)> {
        self.tables.iter().filter(|(_, from, to)| from != to).collect()
    }
}

/// The tables that must be empty before a copy (what a gateway writes).
const TARGET_TABLES: &[&str] = &[
    "messages",
    "attachments",
    "contents",
    "deliveries",
    "attempts",
    "stream_events",
    "stream_consumers",
    "sender_rules",
    "link_key",
];

/// Copies the store in `data_dir` into the database at `url` (which must hold no mail yet), then
/// counts both sides. `progress` is called after each message with (done, total).
pub fn copy_sqlite_to_postgres(
    data_dir: &Path,
    url: &DatabaseUrl,
    progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<CopyReport> {
    let db_path = data_dir.join("mxhook.db");
    anyhow::ensure!(db_path.is_file(), "no SQLite store at {} (is --from a gateway's data_dir?)", db_path.display());
    // Opened as the gateway opens it, which also brings an older store's tables up to date.
    let source = Sqlite::open(data_dir)?;
    let mut rows = rusqlite::Connection::open_with_flags(&db_path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", db_path.display()))?;
    let link_key = link_key(data_dir)?;

    // The copy claims no delivery: the lease's length is of no matter here.
    let target = Postgres::open_with_lease(url, std::time::Duration::from_secs(30))?;
    let mut conn = target.conn()?;
    refuse_non_empty(&mut conn, url)?;
    let snapshot = rows.transaction()?;
    let mut tx = conn.transaction()?;
    // Nothing of this database is anyone's yet; the counts are checked after the commit.
    tx.batch_execute("SET LOCAL synchronous_commit = on")?;
    let mut expected = Vec::new();
    expected.push(("messages", copy_table(&snapshot, &mut tx, &MESSAGES)?));
    expected.push(("attachments", copy_table(&snapshot, &mut tx, &ATTACHMENTS)?));
    let (parts, bytes) = copy_bytes(&snapshot, &source, &mut tx, progress)?;
    expected.push(("contents (parts)", parts));
    expected.push(("contents (bytes)", bytes));
    expected.push(("deliveries", copy_table(&snapshot, &mut tx, &DELIVERIES)?));
    expected.push(("attempts", copy_table(&snapshot, &mut tx, &ATTEMPTS)?));
    expected.push(("stream_events", copy_table(&snapshot, &mut tx, &STREAM_EVENTS)?));
    expected.push(("stream_consumers", copy_table(&snapshot, &mut tx, &STREAM_CONSUMERS)?));
    expected.push(("sender_rules", copy_table(&snapshot, &mut tx, &SENDER_RULES)?));
    // The sequences continue after the highest number SQLite ever gave (AUTOINCREMENT's), so a
    // cursor a consumer acknowledged is never handed out again.
    for (table, column) in [("attempts", "id"), ("stream_events", "cursor")] {
        let last: i64 = snapshot.query_row(
            &format!(
                "SELECT MAX(n) FROM (SELECT MAX({column}) AS n FROM {table}
                 UNION ALL SELECT seq FROM sqlite_sequence WHERE name = '{table}')"
            ),
            [],
            |r| r.get::<_, Option<i64>>(0).map(|n| n.unwrap_or(0)),
        )?;
        if last > 0 {
            tx.execute(&format!("SELECT setval(pg_get_serial_sequence('{table}', '{column}'), $1)"), &[&last])?;
        }
    }
    let generation: i64 = snapshot.query_row("SELECT generation FROM sender_rules_generation", [], |r| r.get(0))?;
    tx.execute("UPDATE sender_rules_generation SET generation = $1", &[&generation])?;
    if let Some(key) = &link_key {
        tx.execute("INSERT INTO link_key (id, key) VALUES (1, $1)", &[key])?;
    }
    expected.push(("link_key", i64::from(link_key.is_some())));
    tx.commit().with_context(|| format!("committing the copy into {url}"))?;
    snapshot.finish()?;

    let mut tables = Vec::new();
    for (table, from) in expected {
        let sql = match table {
            "contents (parts)" => "SELECT COUNT(*) FROM (SELECT DISTINCT message_id, part FROM contents) p".to_string(),
            "contents (bytes)" => "SELECT COALESCE(SUM(octet_length(data)), 0)::bigint FROM contents".to_string(),
            t => format!("SELECT COUNT(*) FROM {t}"),
        };
        let to: i64 = conn.query_one(&sql, &[])?.get(0);
        tables.push((table, from, to));
    }
    Ok(CopyReport { tables })
}

/// `data_dir/url.key`, the key that signed this host's links (None: it never made one).
fn link_key(data_dir: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    let path = data_dir.join("url.key");
    match std::fs::read(&path) {
        Ok(k) if k.len() >= 32 => Ok(Some(k)),
        Ok(_) => anyhow::bail!("{} is shorter than 32 bytes: not a key mxhook made", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn refuse_non_empty(conn: &mut postgres::Client, url: &DatabaseUrl) -> anyhow::Result<()> {
    let mut held = Vec::new();
    for table in TARGET_TABLES {
        let n: i64 = conn.query_one(&format!("SELECT COUNT(*) FROM (SELECT 1 FROM {table} LIMIT 1) t"), &[])?.get(0);
        if n > 0 {
            held.push(*table);
        }
    }
    anyhow::ensure!(
        held.is_empty(),
        "{url} is not empty (rows in: {}): `store copy` copies only into a database no gateway has used; \
         create a new database, or drop this one's tables",
        held.join(", ")
    );
    Ok(())
}

/// A table copied as is: its columns (the same names on both sides), their PostgreSQL types, and
/// the SQLite query that reads them (in the order the rows were made).
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Type)],
    select: &'static str,
    /// The column holding a stored event, which SQLite may keep compressed (`sqlite/codec.rs`):
    /// `select` then also names its codec and dictionary after `columns`, and the JSON is copied.
    event: Option<usize>,
}

const MESSAGES: Table = Table {
    name: "messages",
    columns: &[
        ("id", Type::TEXT),
        ("received_at", Type::INT8),
        ("client_ip", Type::TEXT),
        ("helo", Type::TEXT),
        ("mail_from", Type::TEXT),
        ("rcpt_to", Type::TEXT),
        ("size", Type::INT8),
        ("sha256", Type::TEXT),
        ("subject", Type::TEXT),
        ("from_addr", Type::TEXT),
        ("parsed_status", Type::TEXT),
        ("event_message", Type::TEXT),
        ("raw_inline", Type::BOOL),
        ("files_removed_at", Type::INT8),
        ("disposition", Type::TEXT),
        ("type", Type::TEXT),
    ],
    // The last two: the event's codec and dictionary, as sqlite/reads.rs MESSAGE_COLS reads them.
    select: "SELECT id, received_at, client_ip, helo, mail_from, rcpt_to, size, sha256, subject, from_addr,
                    parsed_status, event_message, raw_inline, files_removed_at, disposition, type, event_codec,
                    CASE event_codec WHEN 2 THEN (SELECT data FROM contents WHERE contents.message_id = messages.id
                                                  AND contents.part = -1) END
             FROM messages ORDER BY rowid",
    event: Some(11),
};

const ATTACHMENTS: Table = Table {
    name: "attachments",
    columns: &[
        ("message_id", Type::TEXT),
        ("idx", Type::INT4),
        ("filename", Type::TEXT),
        ("content_type", Type::TEXT),
        ("size", Type::INT8),
        ("sha256", Type::TEXT),
    ],
    select: "SELECT message_id, idx, filename, content_type, size, sha256 FROM attachments ORDER BY rowid",
    event: None,
};

/// A claim (`in_flight`) is not copied: whatever was in flight is pending again (at-least-once).
const DELIVERIES: Table = Table {
    name: "deliveries",
    columns: &[
        ("id", Type::TEXT),
        ("message_id", Type::TEXT),
        ("event_id", Type::TEXT),
        ("endpoint", Type::TEXT),
        ("status", Type::TEXT),
        ("attempts", Type::INT8),
        ("step", Type::INT8),
        ("retry_requested_at", Type::INT8),
        ("next_attempt_at", Type::INT8),
        ("last_status", Type::INT8),
        ("last_error", Type::TEXT),
        ("created_at", Type::INT8),
        ("updated_at", Type::INT8),
    ],
    // rowid order is the order they were stored in: PostgreSQL's `seq` (a fifo endpoint's ties).
    select: "SELECT id, message_id, event_id, endpoint, status, attempts, step, retry_requested_at,
                    next_attempt_at, last_status, last_error, created_at, updated_at
             FROM deliveries ORDER BY rowid",
    event: None,
};

const ATTEMPTS: Table = Table {
    name: "attempts",
    columns: &[
        ("id", Type::INT8),
        ("delivery_id", Type::TEXT),
        ("attempt", Type::INT8),
        ("started_at", Type::INT8),
        ("duration_ms", Type::INT8),
        ("http_status", Type::INT8),
        ("error", Type::TEXT),
        ("response_body", Type::TEXT),
    ],
    select: "SELECT id, delivery_id, attempt, started_at, duration_ms, http_status, error, response_body
             FROM attempts ORDER BY id",
    event: None,
};

/// Readers join stream events with their message: an event whose message is gone was never read,
/// and PostgreSQL's foreign key does not take it.
const STREAM_EVENTS: Table = Table {
    name: "stream_events",
    columns: &[
        ("cursor", Type::INT8),
        ("stream", Type::TEXT),
        ("event_id", Type::TEXT),
        ("message_id", Type::TEXT),
        ("created_at", Type::INT8),
    ],
    select: "SELECT cursor, stream, event_id, message_id, created_at FROM stream_events
             WHERE message_id IN (SELECT id FROM messages) ORDER BY cursor",
    event: None,
};

const STREAM_CONSUMERS: Table = Table {
    name: "stream_consumers",
    columns: &[("stream", Type::TEXT), ("name", Type::TEXT), ("acked", Type::INT8), ("updated_at", Type::INT8)],
    select: "SELECT stream, name, acked, updated_at FROM stream_consumers ORDER BY rowid",
    event: None,
};

const SENDER_RULES: Table = Table {
    name: "sender_rules",
    columns: &[("rule", Type::TEXT), ("list", Type::TEXT), ("added_at", Type::INT8)],
    select: "SELECT rule, list, added_at FROM sender_rules ORDER BY rowid",
    event: None,
};

/// One SQLite value as the PostgreSQL column's type wants it.
enum Value {
    Text(Option<String>),
    Int8(Option<i64>),
    Int4(Option<i32>),
    Bool(Option<bool>),
}

impl Value {
    fn read(row: &rusqlite::Row<'_>, i: usize, ty: &Type) -> rusqlite::Result<Value> {
        Ok(match *ty {
            Type::INT8 => Value::Int8(row.get(i)?),
            Type::INT4 => Value::Int4(row.get(i)?),
            Type::BOOL => Value::Bool(row.get::<_, Option<i64>>(i)?.map(|n| n != 0)),
            // SQLite keeps a NUL in text (a sender's file name); PostgreSQL's text does not.
            _ => Value::Text(row.get::<_, Option<String>>(i)?.as_deref().map(super::postgres::text)),
        })
    }

    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Value::Text(v) => v,
            Value::Int8(v) => v,
            Value::Int4(v) => v,
            Value::Bool(v) => v,
        }
    }
}

/// Streams `t`'s rows from SQLite into PostgreSQL with COPY (binary); returns how many.
fn copy_table(
    snapshot: &rusqlite::Transaction<'_>,
    tx: &mut postgres::Transaction<'_>,
    t: &Table,
) -> anyhow::Result<i64> {
    let names: Vec<&str> = t.columns.iter().map(|(n, _)| *n).collect();
    let types: Vec<Type> = t.columns.iter().map(|(_, ty)| ty.clone()).collect();
    let sink = tx.copy_in(&format!("COPY {} ({}) FROM STDIN (FORMAT binary)", t.name, names.join(", ")))?;
    let mut writer = BinaryCopyInWriter::new(sink, &types);
    let mut stmt = snapshot.prepare(t.select)?;
    let mut rows = stmt.query([])?;
    let mut n = 0i64;
    while let Some(row) = rows.next()? {
        let values = types
            .iter()
            .enumerate()
            .map(|(i, ty)| match t.event {
                Some(e) if e == i => super::sqlite::stored_event(row, i, types.len(), types.len() + 1)
                    .map(|json| Value::Text(Some(super::postgres::text(&json)))),
                _ => Value::read(row, i, ty),
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(Value::as_sql).collect();
        writer.write(&refs).with_context(|| format!("copying a row of {}", t.name))?;
        n += 1;
    }
    writer.finish().with_context(|| format!("copying {}", t.name))?;
    Ok(n)
}

/// Copies the bytes of every message whose bytes are kept: the raw message and each attachment.
/// Returns (parts, bytes) as expected from the records (the sizes SQLite recorded at ingest), so a
/// file shorter than its record shows as a mismatch.
fn copy_bytes(
    snapshot: &rusqlite::Transaction<'_>,
    source: &Sqlite,
    tx: &mut postgres::Transaction<'_>,
    progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<(i64, i64)> {
    let kept: Vec<(String, i64)> = snapshot
        .prepare("SELECT id, size FROM messages WHERE files_removed_at IS NULL ORDER BY rowid")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut attachments = snapshot.prepare("SELECT idx, size FROM attachments WHERE message_id = ?1 ORDER BY idx")?;
    let (mut parts, mut bytes) = (0i64, 0i64);
    for (done, (id, size)) in kept.iter().enumerate() {
        let mut each = vec![(None, *size)];
        for a in attachments.query_map([id], |r| Ok((Some(r.get::<_, i64>(0)? as usize), r.get::<_, i64>(1)?)))? {
            each.push(a?);
        }
        for (attachment, size) in each {
            let part = attachment.map_or(RAW, |i| i as i32);
            let mut out = ChunkWriter::new(tx, id, part)?;
            let what = || match attachment {
                None => format!("the raw message {id}"),
                Some(i) => format!("attachment {i} of {id}"),
            };
            match source.content(id, attachment).with_context(what)? {
                Content::Bytes(b) => out.write_all(&b).with_context(what)?,
                Content::File(path) => {
                    let mut f =
                        std::fs::File::open(&path).with_context(|| format!("{}: {}", what(), path.display()))?;
                    std::io::copy(&mut f, &mut out).with_context(what)?;
                }
                Content::Reader(mut r) => {
                    std::io::copy(&mut r.reader as &mut dyn Read, &mut out).with_context(what)?;
                }
                Content::Missing | Content::Removed => anyhow::bail!("{}: no bytes in {}", what(), "the SQLite store"),
            }
            out.finish().with_context(what)?;
            parts += 1;
            bytes += size;
        }
        progress(done + 1, kept.len());
    }
    Ok((parts, bytes))
}
