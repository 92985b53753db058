//! Helpers for the store's unit tests (each module's tests are next to it).

use super::{FirstAttempt, NewAttachment, NewMessage, Store};

const RCPT: &[String] = &[];

pub(crate) fn due(endpoint: &str, due: i64, sync: bool) -> FirstAttempt {
    FirstAttempt { endpoint: endpoint.to_string(), due, sync }
}

/// A small message received at `received_at`, due to `endpoints`.
pub(crate) fn message<'a>(
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
