//! The claim queue: which pending deliveries are due, claimed by this process's scheduler (kept in
//! memory, see `claim_due`) or given back, when the next one is due, and the CLI's retry requests.

use rusqlite::params;

use super::reads::{DELIVERY_COLS, delivery_row};
use super::{Delivery, Store};
use crate::time::now_ms;

impl Store {
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
    /// costs nothing to skip.
    ///
    /// A claim is a read: what is in flight is kept in memory (`claimed`), not written, so claiming
    /// never waits for a group commit. The set's lock is held across the read, and an attempt leaves
    /// the set only after its outcome has committed, so a claim sees either the delivery in the set
    /// or its new state, never a finished attempt as still due. After a crash nothing is claimed.
    pub fn claim_due(&self, now: i64, limit: usize, room: &dyn Fn(&str) -> usize) -> anyhow::Result<Vec<Delivery>> {
        let mut claimed = self.claimed();
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

    /// When the next pending delivery is due (None: nothing is waiting).
    pub fn next_due(&self) -> anyhow::Result<Option<i64>> {
        let claimed = serde_json::to_string(&*self.claimed())?;
        let conn = self.deliver_conn();
        Ok(conn.query_row(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending' AND in_flight = 0
               AND id NOT IN (SELECT value FROM json_each(?1))",
            [claimed],
            |r| r.get(0),
        )?)
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
}

#[cfg(test)]
mod tests {
    use crate::store::Store;
    use crate::store::tests::add;

    #[test]
    fn fresh_deliveries_are_claimed_before_retries_and_busy_endpoints_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        add(&store, "msg_retry", 1_000, &["dead"]);
        store.conn().execute("UPDATE deliveries SET attempts = 3, next_attempt_at = 10", []).unwrap();
        add(&store, "msg_fresh", 1_000, &["live"]);
        add(&store, "msg_dead2", 1_000, &["dead"]);

        let any = |_: &str| 10;
        let first = store.claim_due(5_000, 1, &any).unwrap();
        assert_eq!(first[0].message_id, "msg_fresh", "a first attempt goes before an older retry");
        let next = store.claim_due(5_000, 10, &|e: &str| if e == "dead" { 0 } else { 10 }).unwrap();
        assert!(next.is_empty(), "the busy endpoint's deliveries wait: {next:?}");
        let one = store.claim_due(5_000, 10, &|_: &str| 1).unwrap();
        assert_eq!(one.len(), 1, "an endpoint gets no more than its room, however many slots are free");
        let rest = store.claim_due(5_000, 10, &any).unwrap();
        let mut ids: Vec<_> = one.iter().chain(&rest).map(|d| d.message_id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, vec!["msg_dead2", "msg_retry"]);
    }
}
