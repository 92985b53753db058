//! Deleting one message on request (the API's `DELETE /v1/messages/{id}`): its rows, its bytes and
//! files, its deliveries and their attempts. Pending deliveries are cancelled with it (a message
//! someone deleted must not be sent afterwards); one whose attempt is in flight right now makes the
//! deletion wait: its outcome is about to be recorded against rows that must still be there.

use super::{Sqlite, contents, ingest};

/// What a deletion came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Deleted; this many of its deliveries were still pending and are cancelled.
    Deleted {
        cancelled: usize,
    },
    NotFound,
    /// An attempt of one of its deliveries is in flight; try again in a moment.
    InFlight,
}

impl Sqlite {
    pub fn delete_message(&self, message_id: &str) -> anyhow::Result<Removal> {
        // The claims' lock first, as `claim_due` takes it: no claim can take one of its deliveries
        // between the check and the delete.
        let claimed = self.claimed();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM messages WHERE id = ?1)", [message_id], |r| r.get(0))?;
        if !exists {
            return Ok(Removal::NotFound);
        }
        let (ids, pending, in_flight): (Vec<String>, usize, bool) = {
            let mut stmt = tx.prepare_cached("SELECT id, status, in_flight FROM deliveries WHERE message_id = ?1")?;
            let rows = stmt.query_map([message_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?))
            })?;
            let mut out = (Vec::new(), 0, false);
            for row in rows {
                let (id, status, flight) = row?;
                out.1 += usize::from(status == "pending");
                out.2 |= flight;
                out.0.push(id);
            }
            out
        };
        if in_flight || ids.iter().any(|id| claimed.contains(id)) {
            return Ok(Removal::InFlight);
        }
        ingest::delete_message_rows(&tx, message_id)?;
        // Its files go just before the commit (as retention does): a crash in between leaves rows
        // whose links answer 410, never a file without its rows.
        contents::remove(self, &tx, message_id)?;
        tx.commit()?;
        Ok(Removal::Deleted { cancelled: pending })
    }
}

#[cfg(test)]
mod tests {
    use super::Removal;
    use crate::store::sqlite::tests::add;
    use crate::store::sqlite::{Content, Sqlite};

    #[test]
    fn a_deleted_message_leaves_nothing_and_a_claimed_one_waits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path()).unwrap();
        add(&store, "msg_gone", 1_000, &["app"]);
        add(&store, "msg_busy", 1_000, &["app"]);
        let busy = store.claim_due(5_000, 10, &|_: &str| 10, &[]).unwrap();
        let busy: Vec<_> = busy.into_iter().filter(|d| d.message_id == "msg_busy").collect();
        store.unclaim(&store.deliveries(None, Some("msg_gone")).unwrap());

        assert_eq!(store.delete_message("msg_gone").unwrap(), Removal::Deleted { cancelled: 1 });
        assert!(store.message("msg_gone").unwrap().is_none());
        assert!(matches!(store.content("msg_gone", None).unwrap(), Content::Missing));
        assert!(store.deliveries(None, Some("msg_gone")).unwrap().is_empty());
        assert_eq!(store.delete_message("msg_gone").unwrap(), Removal::NotFound);

        assert_eq!(store.delete_message("msg_busy").unwrap(), Removal::InFlight);
        store.unclaim(&busy);
        assert_eq!(store.delete_message("msg_busy").unwrap(), Removal::Deleted { cancelled: 1 });
    }
}
