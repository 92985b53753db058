//! The store: the durable queue between `ingest` (which hands it a message and its deliveries) and
//! `deliver` (which claims due deliveries and records attempts); the CLI and HTTP read and edit it
//! while `serve` runs. `Store` is the one type they hold; behind it a backend per engine: SQLite in
//! `data_dir` (`sqlite/`, the default) or a PostgreSQL database shared by several gateways
//! (`postgres/`). Each public method forwards to the backend (an enum dispatch, see
//! docs/architecture.md "Store backends").

mod copy;
mod group;
mod postgres;
mod reader;
mod sqlite;

pub use self::copy::{CopyReport, copy_sqlite_to_postgres};
pub use self::postgres::DatabaseUrl;
pub use reader::ContentReader;
/// The SQLite backend's test helpers (rows for unit tests elsewhere in the crate).
#[cfg(test)]
pub(crate) use sqlite::tests;

pub use sqlite::{
    AttachmentRow, Attempt, Content, Delivery, DeliveryFilter, FirstAttempt, MessageFilter, MessageRow, NewAttachment,
    NewMessage, Position, Purged, Removal, SenderRule, StreamEvent, StreamItem, StreamPage,
};

use std::path::Path;

use crate::mail::{DeliveryStatus, EventType, NextState};

pub struct Store {
    backend: Backend,
}

/// The engine behind a `Store`.
// One per process, behind an Arc: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Backend {
    /// One host's `data_dir`.
    Sqlite(sqlite::Sqlite),
    /// A database shared by any number of gateways.
    Postgres(self::postgres::Postgres),
}

impl Store {
    /// Opens (creating if needed) the SQLite store in `data_dir`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Store> {
        Ok(Store { backend: Backend::Sqlite(sqlite::Sqlite::open(data_dir)?) })
    }

    /// Opens the configured store: `database` when `[storage]` names one, else SQLite in `data_dir`.
    /// `lease`: how long a claim on a delivery lasts unrenewed (`[storage] lease`; PostgreSQL only:
    /// SQLite's one gateway takes its claims back when it starts).
    pub fn open_configured(
        data_dir: &Path,
        database: Option<&DatabaseUrl>,
        lease: std::time::Duration,
    ) -> anyhow::Result<Store> {
        match database {
            None => Store::open(data_dir),
            Some(url) => {
                let pg = self::postgres::off_runtime(|| self::postgres::Postgres::open_with_lease(url, lease))?
                    .with_run_file(data_dir.join("gateway.run"));
                Ok(Store { backend: Backend::Postgres(pg) })
            }
        }
    }

    /// The key that signs links when the store keeps one for every gateway (PostgreSQL: made with
    /// `make` by the first gateway, read by the others). None: this host's key file is the key.
    pub fn shared_link_key(&self, make: &dyn Fn() -> anyhow::Result<Vec<u8>>) -> anyhow::Result<Option<Vec<u8>>> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(p) => self::postgres::off_runtime(|| p.link_key(make)).map(Some),
        }
    }

    /// Moves when another gateway committed deliveries this one may claim (None: no other gateway
    /// shares this store, this process's own hand-off wakes its scheduler).
    pub fn due_watch(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(p) => Some(p.due_watch()),
        }
    }

    /// Gives back what the store's connections cache in memory (SQLite's page caches; PostgreSQL
    /// caches on its server). For a quiet gateway (`memory.rs`).
    pub fn release_memory(&self) {
        if let Backend::Sqlite(s) = &self.backend {
            s.release_memory();
        }
    }

    /// Which engine, for the log line at start: `sqlite` or the database's URL (password hidden).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite".into(),
            Backend::Postgres(p) => p.describe(),
        }
    }
}

/// Each method of the store's interface, forwarded to the backend's method of the same name (each
/// backend documents what its version does). One line per method here, one `match` arm per backend
/// in the macro: a backend that lacks a method does not compile.
macro_rules! forward {
    ($($(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        impl Store {
            $(
                $(#[$doc])*
                pub fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match &self.backend {
                        Backend::Sqlite(s) => s.$name($($arg),*),
                        Backend::Postgres(p) => self::postgres::off_runtime(|| p.$name($($arg),*)),
                    }
                }
            )*
        }
    };
}

forward! {
    /// The durable hand-off of a new message; returns its deliveries due now, already claimed.
    fn ingest(&self, m: &NewMessage<'_>) -> anyhow::Result<Vec<Delivery>>;
    /// Removes a message that was stored but never acknowledged (a sync delivery failed).
    fn withdraw(&self, message_id: &str) -> anyhow::Result<()>;
    /// Records one attempt and moves the delivery on.
    fn finish_attempt(&self, d: &Delivery, a: &Attempt, next: &NextState) -> anyhow::Result<()>;
    /// Gives back deliveries claimed but not attempted.
    fn unclaim(&self, deliveries: &[Delivery]) -> ();
    /// Deliveries a crash left in flight go back to the queue (at-least-once).
    fn release_in_flight(&self) -> anyhow::Result<usize>;
    /// Claims up to `limit` due deliveries (at most `room(endpoint)` each; `fifo` endpoints in order).
    fn claim_due(&self, now: i64, limit: usize, room: &dyn Fn(&str) -> usize, fifo: &[String]) -> anyhow::Result<Vec<Delivery>>;
    /// Puts claimed deliveries back in the queue (their outcome could not be recorded).
    fn release(&self, ids: &[String]) -> anyhow::Result<()>;
    /// When the next pending delivery is due (None: nothing is waiting).
    fn next_due(&self, fifo: &[String]) -> anyhow::Result<Option<i64>>;
    /// Asks for an attempt now, keeping the event id. False: no such delivery.
    fn request_retry(&self, delivery_id: &str) -> anyhow::Result<bool>;
    /// Asks for an attempt now of every `failed` delivery (back to the queue) or every `pending` one
    /// waiting for a later attempt (`flush`), in chunks; returns how many.
    fn retry_all(&self, status: DeliveryStatus, progress: &mut dyn FnMut(usize)) -> anyhow::Result<usize>;
    /// Asks for an attempt now of every delivery of the messages received in `[since, until)` (ms),
    /// of one endpoint and in one state when given, each keeping its event id. Returns how many.
    fn replay(&self, since: i64, until: i64, endpoint: Option<&str>, status: Option<DeliveryStatus>) -> anyhow::Result<usize>;
    /// Deletes one message, its bytes, deliveries and attempts; pending deliveries are cancelled.
    fn delete_message(&self, message_id: &str) -> anyhow::Result<Removal>;
    /// Up to `limit` messages after `after` (newest first) that pass `f` (keyset pages).
    fn list_messages(&self, f: &MessageFilter, after: Option<&Position>, limit: usize) -> anyhow::Result<Vec<MessageRow>>;
    /// Up to `limit` deliveries after `after` (newest first) that pass `f` (keyset pages).
    fn list_deliveries(&self, f: &DeliveryFilter, after: Option<&Position>, limit: usize) -> anyhow::Result<Vec<Delivery>>;
    /// The raw message (`attachment` None) or one decoded attachment, as stored.
    fn content(&self, message_id: &str, attachment: Option<usize>) -> anyhow::Result<Content>;
    /// The raw message's bytes, in memory (None: no such message, or its bytes were removed).
    fn raw(&self, message_id: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// An attachment's record, for its link.
    fn attachment(&self, message_id: &str, index: usize) -> anyhow::Result<Option<AttachmentRow>>;
    /// Every attachment of a message, in index order (the zip link).
    fn attachments(&self, message_id: &str) -> anyhow::Result<Vec<AttachmentRow>>;
    fn deliveries(&self, status: Option<DeliveryStatus>, message_id: Option<&str>) -> anyhow::Result<Vec<Delivery>>;
    /// Every delivery of these messages (a page of `list_messages`: what became of each).
    fn deliveries_of(&self, message_ids: &[String]) -> anyhow::Result<Vec<Delivery>>;
    fn delivery(&self, id: &str) -> anyhow::Result<Option<Delivery>>;
    fn attempts(&self, delivery_id: &str) -> anyhow::Result<Vec<Attempt>>;
    /// The newest `limit` messages, of one type when `kind` says so.
    fn messages(&self, limit: usize, kind: Option<EventType>) -> anyhow::Result<Vec<MessageRow>>;
    fn message(&self, id: &str) -> anyhow::Result<Option<MessageRow>>;
    /// Pending deliveries and when the oldest of them was created.
    fn queue_stats(&self) -> anyhow::Result<(i64, Option<i64>)>;
    /// True when the store takes durable writes (the health probe).
    fn writable(&self) -> bool;
    fn purge_files(&self, cutoff_ms: i64) -> anyhow::Result<usize>;
    fn purge_files_with(&self, cutoff_ms: i64, progress: &mut dyn FnMut(usize)) -> anyhow::Result<usize>;
    fn purge_records(&self, cutoff_ms: i64) -> anyhow::Result<usize>;
    fn purge_records_with(&self, cutoff_ms: i64, progress: &mut dyn FnMut(usize)) -> anyhow::Result<usize>;
    /// Messages older than `cutoff_ms` kept only because a delivery is pending.
    fn pending_before(&self, cutoff_ms: i64) -> anyhow::Result<usize>;
    /// One janitor pass: files past `retention_ms`, records past `keep_metadata_ms`.
    fn apply_retention(&self, now_ms: i64, retention_ms: i64, keep_metadata_ms: i64) -> anyhow::Result<Purged>;
    /// The generation of the stored sender rules: it changes whenever they do.
    fn sender_rules_generation(&self) -> anyhow::Result<i64>;
    fn sender_rules(&self) -> anyhow::Result<(i64, Vec<SenderRule>)>;
    fn set_sender_rule(&self, rule: &str, allow: bool) -> anyhow::Result<bool>;
    fn remove_sender_rule(&self, rule: &str) -> anyhow::Result<bool>;
    /// Moves after each commit that added stream events.
    fn streams_watch(&self) -> tokio::sync::watch::Receiver<u64>;
    fn stream_events(&self, stream: &str, after: i64, limit: usize, types: Option<&[EventType]>) -> anyhow::Result<Vec<StreamEvent>>;
    fn stream_read(&self, stream: &str, after: i64, limit: usize, types: Option<&[EventType]>) -> anyhow::Result<StreamPage>;
    fn purge_stream(&self, stream: &str, cutoff_ms: i64) -> anyhow::Result<usize>;
    /// Wakes stream readers when another process committed newer stream events.
    fn check_streams_tip(&self) -> anyhow::Result<()>;
    fn stream_last(&self, stream: &str) -> anyhow::Result<i64>;
    fn consumer_acked(&self, stream: &str, name: &str) -> anyhow::Result<Option<i64>>;
    fn ack(&self, stream: &str, name: &str, cursor: i64) -> anyhow::Result<i64>;
}
