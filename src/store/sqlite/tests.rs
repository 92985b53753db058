//! Helpers for the store's unit tests (each module's tests are next to it).

use super::{FirstAttempt, NewAttachment, NewMessage, Sqlite};

const RCPT: &[String] = &[];

pub(crate) fn due(endpoint: &str, due: i64, sync: bool) -> FirstAttempt {
    FirstAttempt { endpoint: endpoint.to_string(), due, sync, ordered: false }
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
        event_type: crate::mail::EventType::Received,
        not_sent: None,
        raw: b"Subject: x\r\n\r\nhi\r\n",
        keep_files: true,
        attachments,
        endpoints,
        streams: &[],
    }
}

/// Stores a small message with one attachment, received at `received_at`, due to `endpoints`.
pub(crate) fn add(store: &Sqlite, id: &str, received_at: i64, endpoints: &[&str]) {
    let eps: Vec<_> = endpoints.iter().map(|e| due(e, received_at, false)).collect();
    let att = [NewAttachment { filename: Some("a.txt"), content_type: "text/plain", sha256: "x", bytes: b"hi" }];
    let handed = store.ingest(&message(id, received_at, &att, &eps)).unwrap();
    // No scheduler here: the deliveries go back to the queue for these tests' claims.
    store.unclaim(&handed);
}

#[cfg(test)]
mod group_commit {
    use crate::mail::NextState;
    use crate::store::sqlite::attempts::AttemptRecord;
    use crate::store::sqlite::commit::{Work, write_batch};
    use crate::store::sqlite::ingest::Row;
    use crate::store::sqlite::tests::{due, message};
    use crate::store::sqlite::{Attempt, Sqlite};

    #[test]
    fn an_item_of_a_group_commit_that_fails_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path()).unwrap();
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
        let (a, gone, b) = (
            Row::new(&message("msg_a", 1_000, &[], &eps)).unwrap(),
            record("dlv_gone"),
            Row::new(&message("msg_b", 1_000, &[], &eps)).unwrap(),
        );
        let batch: [&dyn Work; 3] = [&a, &gone, &b];
        let each = write_batch(&mut store.conn(), batch.into_iter()).unwrap();
        assert!(each[0].is_ok() && each[2].is_ok(), "{each:?}");
        assert!(each[1].as_ref().is_err_and(|e| e.contains("FOREIGN KEY")), "{each:?}");
        for id in ["msg_a", "msg_b"] {
            assert!(store.message(id).unwrap().is_some(), "{id} was committed");
            assert_eq!(store.deliveries(None, Some(id)).unwrap().len(), 1);
        }
        assert!(store.attempts("dlv_gone").unwrap().is_empty());

        // A batch of attempts only is committed without waiting for the disk, then FULL is back.
        let d = &store.deliveries(None, Some("msg_a")).unwrap()[0];
        let attempt = record(&d.id);
        let each = write_batch(&mut store.conn(), [&attempt as &dyn Work].into_iter()).unwrap();
        assert!(each[0].is_ok(), "{each:?}");
        assert_eq!(store.attempts(&d.id).unwrap().len(), 1);
        let sync: i64 = store.conn().query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "synchronous is FULL again");
    }
}

#[cfg(test)]
mod memory {
    use crate::store::sqlite::Sqlite;
    use crate::store::sqlite::tests::add;

    /// A quiet gateway empties the page caches (`memory.rs`): every connection reads again after.
    #[test]
    fn after_the_page_caches_are_released_every_connection_reads_and_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path()).unwrap();
        add(&store, "msg_a", 1_000, &["app"]);
        store.release_memory();
        assert_eq!(store.message("msg_a").unwrap().map(|m| m.id), Some("msg_a".to_string()));
        let claimed = store.claim_due(2_000, 10, &|_| 10, &[]).unwrap();
        assert_eq!(claimed.iter().map(|d| d.message_id.as_str()).collect::<Vec<_>>(), ["msg_a"]);
        store.release_memory();
        add(&store, "msg_b", 1_001, &["app"]);
        assert!(store.message("msg_b").unwrap().is_some());
    }
}
