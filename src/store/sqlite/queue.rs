//! The claim queue: which pending deliveries are due, claimed by this process's scheduler (kept in
//! memory, see `claim_due`) or given back, when the next one is due, and the CLI's retry requests.

use rusqlite::{OptionalExtension, params};

use super::reads::{DELIVERY_COLS, delivery_row};
use super::{Delivery, Sqlite};
use crate::mail::DeliveryStatus;
use crate::time::now_ms;

/// Rows in the first transaction of `retry_all`; the next ones are sized to hold the write lock for
/// about RETRY_CHUNK_TIME.
const RETRY_CHUNK: i64 = 1_000;
const RETRY_CHUNK_TIME: std::time::Duration = std::time::Duration::from_millis(20);

impl Sqlite {
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

    /// Deliveries a crash left in flight go back to the queue (at-least-once).
    pub fn release_in_flight(&self) -> anyhow::Result<usize> {
        Ok(self.conn().execute("UPDATE deliveries SET in_flight = 0 WHERE in_flight = 1", [])?)
    }

    /// Claims up to `limit` due deliveries for this process's scheduler.
    /// First attempts go before retries (a backlog of retries must not starve fresh mail), and
    /// no endpoint gets more than `room(endpoint)` (what its concurrency leaves free). Each
    /// endpoint's due rows are read from the `deliveries_claim` index, so a busy endpoint's backlog
    /// costs nothing to skip. A `fifo` endpoint gets only its oldest pending delivery, when that one
    /// is due and nothing of the endpoint is in flight (see `fifo_head`).
    ///
    /// A claim is a read: what is in flight is kept in memory (`claimed`), not written, so claiming
    /// never waits for a group commit. The set's lock is held across the read, and an attempt leaves
    /// the set only after its outcome has committed, so a claim sees either the delivery in the set
    /// or its new state, never a finished attempt as still due. After a crash nothing is claimed.
    pub fn claim_due(
        &self,
        now: i64,
        limit: usize,
        room: &dyn Fn(&str) -> usize,
        fifo: &[String],
    ) -> anyhow::Result<Vec<Delivery>> {
        let mut claimed = self.claimed();
        let claimed_json = if fifo.is_empty() { String::new() } else { serde_json::to_string(&*claimed)? };
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
            if fifo.contains(e) {
                if let Some(head) = fifo_head(&tx, e, &claimed_json)?
                    && head.1 <= now
                    && room(e) > 0
                {
                    candidates.push(head);
                }
                continue;
            }
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

    /// When the next pending delivery is due (None: nothing is waiting). Of a `fifo` endpoint only
    /// its next in line counts, and nothing while one is in flight: the rest wait for it, not a time.
    /// The earliest due row is read off `deliveries_due` in order, past the few claimed or in flight:
    /// a backlog of millions costs one index probe, not a walk (a MIN() with these conditions would
    /// read every pending row).
    pub fn next_due(&self, fifo: &[String]) -> anyhow::Result<Option<i64>> {
        let claimed = serde_json::to_string(&*self.claimed())?;
        let conn = self.deliver_conn();
        let others: Option<i64> = conn
            .prepare_cached(
                "SELECT next_attempt_at FROM deliveries INDEXED BY deliveries_due
                 WHERE status = 'pending' AND next_attempt_at IS NOT NULL AND in_flight = 0
                   AND id NOT IN (SELECT value FROM json_each(?1))
                   AND endpoint NOT IN (SELECT value FROM json_each(?2))
                 ORDER BY next_attempt_at LIMIT 1",
            )?
            .query_row(params![claimed, serde_json::to_string(fifo)?], |r| r.get(0))
            .optional()?;
        let mut next = others;
        for e in fifo {
            if let Some((_, at, _)) = fifo_head(&conn, e, &claimed)? {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        Ok(next)
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

    /// Asks for an attempt now of every delivery in `status`, keeping each event id: `failed` ones
    /// go back to the queue (`deliveries retry --all-failed`), `pending` ones waiting for a later
    /// attempt are due now (`flush`, Postfix's `postqueue -f`, after an outage). The scheduler of a
    /// running gateway sees them at its next look at the queue (within `deliver::POLL`). Returns how
    /// many were changed.
    ///
    /// Transactions of about 20 ms (a thousand rows or so), read off `deliveries_due`, with a pause
    /// after each as long as it took: the gateway's group commit (and the 250s that wait for it) gets the database
    /// at least half the time, however large the queue. Rows the gateway changes meanwhile (an
    /// attempt since: `updated_at` after the start) are its, not taken again.
    pub fn retry_all(&self, status: DeliveryStatus, progress: &mut dyn FnMut(usize)) -> anyhow::Result<usize> {
        let now = now_ms();
        let sql = match status {
            DeliveryStatus::Failed => {
                "UPDATE deliveries SET status = 'pending', retry_requested_at = ?1, next_attempt_at = ?1, updated_at = ?1
                 WHERE rowid IN (SELECT rowid FROM deliveries INDEXED BY deliveries_due
                                 WHERE status = 'failed' AND updated_at <= ?1 LIMIT ?2)"
            }
            DeliveryStatus::Pending => {
                "UPDATE deliveries SET retry_requested_at = ?1, next_attempt_at = ?1, updated_at = ?1
                 WHERE rowid IN (SELECT rowid FROM deliveries INDEXED BY deliveries_due
                                 WHERE status = 'pending' AND next_attempt_at > ?1 AND updated_at <= ?1 LIMIT ?2)"
            }
            DeliveryStatus::Succeeded => anyhow::bail!("succeeded deliveries are not retried in bulk"),
        };
        let (mut total, mut chunk) = (0, RETRY_CHUNK);
        loop {
            let started = std::time::Instant::now();
            let n = self.conn().prepare_cached(sql)?.execute(params![now, chunk])?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
            progress(total);
            let took = started.elapsed();
            // The next chunk sized to hold the lock for about RETRY_CHUNK_TIME on this machine.
            let scaled = chunk as f64 * RETRY_CHUNK_TIME.as_secs_f64() / took.as_secs_f64().max(1e-4);
            chunk = (scaled as i64).clamp(100, 20_000);
            super::pause_writes(took);
        }
    }

    /// Asks for an attempt now of every delivery of the messages received in `[since, until)` (ms),
    /// of one endpoint and in one state when given: the recovery after an app's outage. Each keeps
    /// its event id, as a retry does. Returns how many were scheduled.
    pub fn replay(
        &self,
        since: i64,
        until: i64,
        endpoint: Option<&str>,
        status: Option<DeliveryStatus>,
    ) -> anyhow::Result<usize> {
        let now = now_ms();
        let n = self.conn().execute(
            "UPDATE deliveries SET status = 'pending', retry_requested_at = ?1, next_attempt_at = ?1, updated_at = ?1
             WHERE message_id IN (SELECT id FROM messages WHERE received_at >= ?2 AND received_at < ?3)
               AND (?4 IS NULL OR endpoint = ?4) AND (?5 IS NULL OR status = ?5)",
            params![now, since, until, endpoint, status.map(DeliveryStatus::as_str)],
        )?;
        Ok(n)
    }
}

/// A fifo endpoint's next delivery in line, as a claim candidate (is a retry, due at, rowid): its
/// oldest pending one in arrival order (the message's received_at, then the order stored, since ids
/// made in the same millisecond are not ordered). None while the endpoint has one in flight (claimed
/// here, in `claimed_json`, or a session's sync attempt) or nothing pending. A delivery waiting for
/// its retry is still the oldest: everything after it waits too.
fn fifo_head(
    conn: &rusqlite::Connection,
    endpoint: &str,
    claimed_json: &str,
) -> rusqlite::Result<Option<(bool, i64, i64)>> {
    let busy: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE status = 'pending' AND endpoint = ?1
           AND (in_flight = 1 OR id IN (SELECT value FROM json_each(?2))))",
        )?
        .query_row(params![endpoint, claimed_json], |r| r.get(0))?;
    if busy {
        return Ok(None);
    }
    conn.prepare_cached(
        "SELECT attempts > 0, next_attempt_at, rowid FROM deliveries INDEXED BY deliveries_fifo
         WHERE status = 'pending' AND endpoint = ?1 ORDER BY created_at, rowid LIMIT 1",
    )?
    .query_row([endpoint], |r| Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0), r.get(2)?)))
    .optional()
}

#[cfg(test)]
mod tests {
    use crate::store::sqlite::Sqlite;
    use crate::store::sqlite::tests::add;

    #[test]
    fn a_replay_takes_the_deliveries_of_its_window_and_filters_and_keeps_their_event_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path()).unwrap();
        add(&store, "msg_before", 999, &["a"]);
        add(&store, "msg_in", 1_000, &["a", "b"]);
        add(&store, "msg_edge", 2_000, &["a"]);
        store.conn().execute("UPDATE deliveries SET status = 'succeeded', next_attempt_at = NULL", []).unwrap();
        let events: Vec<String> = store.deliveries(None, None).unwrap().into_iter().map(|d| d.event_id).collect();

        assert_eq!(store.replay(1_000, 2_000, Some("b"), None).unwrap(), 1);
        assert_eq!(store.replay(1_000, 2_000, None, Some(crate::mail::DeliveryStatus::Failed)).unwrap(), 0);
        assert_eq!(store.replay(1_000, 2_000, None, None).unwrap(), 2, "[since, until): msg_in's two");
        let pending: Vec<_> = store.deliveries(Some(crate::mail::DeliveryStatus::Pending), None).unwrap();
        assert!(pending.iter().all(|d| d.message_id == "msg_in" && d.retry_requested_at.is_some()), "{pending:?}");
        let after: Vec<String> = store.deliveries(None, None).unwrap().into_iter().map(|d| d.event_id).collect();
        assert_eq!(events, after, "event ids never change");
    }

    #[test]
    fn fresh_deliveries_are_claimed_before_retries_and_busy_endpoints_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path()).unwrap();
        add(&store, "msg_retry", 1_000, &["dead"]);
        store.conn().execute("UPDATE deliveries SET attempts = 3, next_attempt_at = 10", []).unwrap();
        add(&store, "msg_fresh", 1_000, &["live"]);
        add(&store, "msg_dead2", 1_000, &["dead"]);

        let any = |_: &str| 10;
        let first = store.claim_due(5_000, 1, &any, &[]).unwrap();
        assert_eq!(first[0].message_id, "msg_fresh", "a first attempt goes before an older retry");
        let next = store.claim_due(5_000, 10, &|e: &str| if e == "dead" { 0 } else { 10 }, &[]).unwrap();
        assert!(next.is_empty(), "the busy endpoint's deliveries wait: {next:?}");
        let one = store.claim_due(5_000, 10, &|_: &str| 1, &[]).unwrap();
        assert_eq!(one.len(), 1, "an endpoint gets no more than its room, however many slots are free");
        let rest = store.claim_due(5_000, 10, &any, &[]).unwrap();
        let mut ids: Vec<_> = one.iter().chain(&rest).map(|d| d.message_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, vec!["msg_dead2", "msg_retry"]);
    }

    #[test]
    fn a_fifo_endpoint_gets_its_oldest_pending_delivery_alone_even_while_it_waits_for_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path()).unwrap();
        add(&store, "msg_1", 1_000, &["f", "c"]);
        add(&store, "msg_2", 2_000, &["f", "c"]);
        // msg_1 failed once everywhere and waits for its retry at 9_000.
        store
            .conn()
            .execute(
                "UPDATE deliveries SET attempts = 1, step = 1, next_attempt_at = 9_000 WHERE message_id = 'msg_1'",
                [],
            )
            .unwrap();
        let fifo = ["f".to_string()];
        let any = |_: &str| 10;
        let now = store.claim_due(5_000, 10, &any, &fifo).unwrap();
        let now: Vec<_> = now.iter().map(|d| (d.endpoint.as_str(), d.message_id.as_str())).collect();
        assert_eq!(now, [("c", "msg_2")], "the fifo endpoint's later delivery waits for the retry of the earlier one");
        assert_eq!(store.next_due(&fifo).unwrap(), Some(9_000), "the blocked delivery is not due");

        let head = store.claim_due(9_000, 10, &any, &fifo).unwrap();
        let mut head: Vec<_> = head.iter().map(|d| (d.endpoint.as_str(), d.message_id.as_str())).collect();
        head.sort();
        assert_eq!(head, [("c", "msg_1"), ("f", "msg_1")]);
        assert!(store.claim_due(9_000, 10, &any, &fifo).unwrap().is_empty(), "one at a time");
        assert_eq!(store.next_due(&fifo).unwrap(), None, "nothing is due while the head is in flight");

        store.conn().execute("UPDATE deliveries SET status = 'succeeded' WHERE message_id = 'msg_1'", []).unwrap();
        let in_flight: Vec<String> = store.claimed().iter().cloned().collect();
        store.release(&in_flight).unwrap();
        let next = store.claim_due(9_000, 10, &any, &fifo).unwrap();
        let next: Vec<_> = next.iter().filter(|d| d.endpoint == "f").map(|d| d.message_id.as_str()).collect();
        assert_eq!(next, ["msg_2"], "the next in line goes once the head has succeeded");
    }

    #[test]
    fn a_retried_failed_fifo_delivery_is_the_oldest_again_and_goes_next() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path()).unwrap();
        add(&store, "msg_1", 1_000, &["f"]);
        add(&store, "msg_2", 2_000, &["f"]);
        store
            .conn()
            .execute("UPDATE deliveries SET status = 'failed', attempts = 3 WHERE message_id = 'msg_1'", [])
            .unwrap();
        let fifo = ["f".to_string()];
        let any = |_: &str| 10;
        let first = store.claim_due(5_000, 10, &any, &fifo).unwrap();
        assert_eq!(
            first.iter().map(|d| d.message_id.as_str()).collect::<Vec<_>>(),
            ["msg_2"],
            "a failed one holds nothing"
        );
        let failed = store.deliveries(None, Some("msg_1")).unwrap().remove(0);
        assert!(store.request_retry(&failed.id).unwrap());
        assert!(store.claim_due(i64::MAX, 10, &any, &fifo).unwrap().is_empty(), "it waits for the one in flight");
        store.release(&[first[0].id.clone()]).unwrap();
        let next = store.claim_due(i64::MAX, 10, &any, &fifo).unwrap();
        assert_eq!(next.iter().map(|d| d.message_id.as_str()).collect::<Vec<_>>(), ["msg_1"], "then it goes first");
    }
}
