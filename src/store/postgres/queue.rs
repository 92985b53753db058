//! Claims as leases: a claim sets `lease_owner` (this gateway) and `lease_until` on the rows it
//! takes, in one transaction, under a per-endpoint advisory lock so that an endpoint's
//! `concurrency` and `fifo` order hold across every gateway; rows another transaction is writing are
//! skipped (`FOR UPDATE SKIP LOCKED`), never waited for. A lease that has expired (its gateway died,
//! or lost the database for longer than a lease) is free to claim again: at-least-once, same event
//! id. Due times and lease ends are the callers' clocks (as SQLite's): gateways' clocks should agree
//! (NTP); a skew only moves a takeover by as much.

use anyhow::Context;

use super::reads::{DELIVERY_COLS, delivery_row};
use super::{LOCK_IN_ORDER, Postgres, lease_until};
use crate::mail::DeliveryStatus;
use crate::store::Delivery;
use crate::time::now_ms;

/// Rows per transaction of `retry_all`.
const RETRY_CHUNK: i64 = 5_000;

/// Each endpoint with a pending delivery, in name order: a skip scan of `deliveries_due`, so a large
/// backlog on one endpoint costs one index probe, not a walk.
const ENDPOINTS: &str = "WITH RECURSIVE e AS (
        (SELECT endpoint FROM deliveries WHERE status = 'pending' ORDER BY endpoint LIMIT 1)
        UNION ALL
        SELECT (SELECT endpoint FROM deliveries WHERE status = 'pending' AND endpoint > e.endpoint
                ORDER BY endpoint LIMIT 1)
        FROM e WHERE e.endpoint IS NOT NULL
    ) SELECT endpoint FROM e WHERE endpoint IS NOT NULL";

/// Serialises the claims of one endpoint across the cluster (held to the claim's commit).
const ENDPOINT_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended('mxhook.claim:' || $1, 0))";

impl Postgres {
    /// Gives back deliveries claimed but not attempted (best effort: else their lease expires).
    pub(in crate::store) fn unclaim(&self, deliveries: &[Delivery]) {
        let ids: Vec<String> = deliveries.iter().map(|d| d.id.clone()).collect();
        if let Err(e) = self.give_back(&ids) {
            tracing::warn!(error = %format!("{e:#}"), "cannot give deliveries back; their leases will expire");
        }
        self.drop_held(&ids);
    }

    fn give_back(&self, ids: &[String]) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.conn()?.execute(
            &format!(
                "{LOCK_IN_ORDER} UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
                 WHERE id IN (SELECT id FROM locked)"
            ),
            &[&ids, &self.owner],
        )?;
        Ok(())
    }

    /// At the start of `serve`: the leases this host's previous run held (it crashed, or was killed)
    /// go back to the queue at once, rather than when they expire. Other hosts' leases are theirs
    /// until they expire. Then this run is remembered as the host's last.
    pub(in crate::store) fn release_in_flight(&self) -> anyhow::Result<usize> {
        let Some(file) = &self.run_file else {
            return Ok(0);
        };
        let previous = match std::fs::read_to_string(file) {
            Ok(owner) => Some(owner.trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        // Rows another gateway has locked are skipped, never waited for: it is taking them over or
        // recording an attempt on them (`attempts.rs` locks the row whoever leases it), and that
        // transaction may next want a row this one had already taken: a deadlock, which PostgreSQL
        // breaks by failing one side, here the gateway's start. A skipped lease only expires.
        let released = match previous.filter(|p| !p.is_empty() && *p != self.owner) {
            Some(p) => self.conn()?.execute(
                "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL WHERE id IN (
                   SELECT id FROM deliveries WHERE lease_owner = $1 AND status = 'pending' FOR UPDATE SKIP LOCKED)",
                &[&p],
            )? as usize,
            None => 0,
        };
        let tmp = file.with_extension("run.tmp");
        std::fs::write(&tmp, &self.owner)
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, file))
            .with_context(|| format!("writing {}", file.display()))?;
        if released > 0 {
            self.conn()?.batch_execute(&format!("NOTIFY {}", super::listen::DUE))?;
        }
        Ok(released)
    }

    /// Claims up to `limit` due deliveries for this gateway (see `sqlite::Sqlite::claim_due` for the
    /// order: first attempts before retries, each by due time). An endpoint gets at most `room` minus
    /// what other gateways hold of it; a fifo endpoint only its oldest pending delivery, when nobody
    /// holds one of its deliveries.
    pub(in crate::store) fn claim_due(
        &self,
        now: i64,
        limit: usize,
        room: &dyn Fn(&str) -> usize,
        fifo: &[String],
    ) -> anyhow::Result<Vec<Delivery>> {
        let held: Vec<String> = self.held().iter().cloned().collect();
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        let endpoints: Vec<String> = tx.query(ENDPOINTS, &[])?.iter().map(|r| r.get(0)).collect();
        // (is a retry, due at, id)
        let mut candidates: Vec<(bool, i64, String)> = Vec::new();
        for e in &endpoints {
            let free = room(e).min(limit);
            if free == 0 {
                continue;
            }
            tx.execute(ENDPOINT_LOCK, &[e])?;
            if fifo.contains(e) {
                if let Some(head) = fifo_head(&mut tx, e, now)?
                    && head.1 <= now
                    && !held.contains(&head.2)
                {
                    candidates.push(head);
                }
                continue;
            }
            let others: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND endpoint = $1
                       AND lease_owner IS NOT NULL AND lease_owner <> $2 AND lease_until >= $3",
                    &[e, &self.owner, &now],
                )?
                .get(0);
            let free = free.saturating_sub(others as usize);
            let mut mine: Vec<(bool, i64, String)> = Vec::new();
            for retry in [false, true] {
                if mine.len() >= free {
                    break;
                }
                let rows = tx.query(
                    "SELECT id, next_attempt_at FROM deliveries
                     WHERE status = 'pending' AND endpoint = $1 AND (attempts > 0) = $2 AND next_attempt_at <= $3
                       AND (lease_until IS NULL OR lease_until < $3) AND NOT (id = ANY($4))
                     ORDER BY next_attempt_at LIMIT $5 FOR UPDATE SKIP LOCKED",
                    &[e, &retry, &now, &held, &((free - mine.len()) as i64)],
                )?;
                mine.extend(rows.iter().map(|r| (retry, r.get(1), r.get(0))));
            }
            candidates.extend(mine);
        }
        candidates.sort_unstable();
        candidates.truncate(limit);
        let ids: Vec<String> = candidates.into_iter().map(|(_, _, id)| id).collect();
        let rows = tx.query(
            &format!(
                "UPDATE deliveries SET lease_owner = $2, lease_until = $3 WHERE id = ANY($1) RETURNING {DELIVERY_COLS}"
            ),
            &[&ids, &self.owner, &lease_until(now, self.lease)],
        )?;
        let mut taken = rows.iter().map(delivery_row).collect::<anyhow::Result<Vec<_>>>()?;
        tx.commit()?;
        self.hold(&ids);
        taken.sort_by_key(|d| (d.attempts > 0, d.next_attempt_at));
        Ok(taken)
    }

    /// Puts claimed deliveries back in the queue (their outcome could not be recorded). A write: while
    /// the database takes none it fails, and the caller keeps the ids for its next turn.
    pub(in crate::store) fn release(&self, ids: &[String]) -> anyhow::Result<()> {
        self.give_back(ids)?;
        self.drop_held(ids);
        Ok(())
    }

    /// When the next delivery this gateway could claim is due: a pending one's due time, or the end
    /// of another gateway's lease on it (a takeover). Of a fifo endpoint only its next in line.
    pub(in crate::store) fn next_due(&self, fifo: &[String]) -> anyhow::Result<Option<i64>> {
        let held: Vec<String> = self.held().iter().cloned().collect();
        let now = now_ms();
        let mut conn = self.conn()?;
        let mut tx = conn.build_transaction().read_only(true).start()?;
        // The earliest due row off `deliveries_next` in order (past the few this gateway holds),
        // and the lease ends of the few rows other gateways hold: a MIN() over every pending row
        // would read a backlog of millions at every turn of the scheduler.
        let mut next: Option<i64> = tx
            .query_one(
                "SELECT LEAST(
                   (SELECT next_attempt_at FROM deliveries
                    WHERE status = 'pending' AND next_attempt_at IS NOT NULL
                      AND (lease_until IS NULL OR lease_until < $3)
                      AND NOT (id = ANY($1)) AND NOT (endpoint = ANY($2))
                    ORDER BY next_attempt_at LIMIT 1),
                   (SELECT MIN(GREATEST(next_attempt_at, lease_until + 1)) FROM deliveries
                    WHERE lease_owner IS NOT NULL AND lease_until >= $3 AND status = 'pending'
                      AND NOT (id = ANY($1)) AND NOT (endpoint = ANY($2))))",
                &[&held, &fifo, &now],
            )?
            .get(0);
        for e in fifo {
            if let Some((_, at, id)) = fifo_head(&mut tx, e, now)?
                && !held.contains(&id)
            {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        tx.commit()?;
        Ok(next)
    }

    /// As SQLite's `retry_all`: every `failed` delivery back to the queue, or every `pending` one
    /// waiting for a later attempt due now, a few thousand rows per transaction, each starting where
    /// the last one stopped in `deliveries_status` order (a scan from the table's start would pass
    /// every row already changed, again at each chunk); every gateway's scheduler is woken after each.
    pub(in crate::store) fn retry_all(
        &self,
        status: DeliveryStatus,
        progress: &mut dyn FnMut(usize),
    ) -> anyhow::Result<usize> {
        let now = now_ms();
        let sql = match status {
            DeliveryStatus::Failed => {
                "UPDATE deliveries SET status = 'pending', retry_requested_at = $1, next_attempt_at = $1, updated_at = $1
                 WHERE id IN (SELECT id FROM deliveries WHERE status = 'failed' AND updated_at <= $1
                                AND (created_at, id) > ($3, $4)
                              ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING created_at, id"
            }
            DeliveryStatus::Pending => {
                "UPDATE deliveries SET retry_requested_at = $1, next_attempt_at = $1, updated_at = $1
                 WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at > $1
                                AND updated_at <= $1 AND (created_at, id) > ($3, $4)
                              ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING created_at, id"
            }
            DeliveryStatus::Succeeded => anyhow::bail!("succeeded deliveries are not retried in bulk"),
        };
        let (mut total, mut from) = (0, (i64::MIN, String::new()));
        loop {
            let mut conn = self.conn()?;
            let rows = conn.query(sql, &[&now, &RETRY_CHUNK, &from.0, &from.1])?;
            let Some(last) = rows.iter().map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1))).max() else {
                return Ok(total);
            };
            from = last;
            conn.batch_execute(&format!("NOTIFY {}", super::listen::DUE))?;
            total += rows.len();
            progress(total);
        }
    }

    /// Asks for an attempt now, keeping the event id. False: no such delivery.
    pub(in crate::store) fn request_retry(&self, delivery_id: &str) -> anyhow::Result<bool> {
        let now = now_ms();
        let n = self.conn()?.execute(
            "UPDATE deliveries SET status = 'pending', retry_requested_at = $2, next_attempt_at = $2, updated_at = $2
             WHERE id = $1",
            &[&delivery_id, &now],
        )?;
        if n == 1 {
            self.conn()?.batch_execute(&format!("NOTIFY {}", super::listen::DUE))?;
        }
        Ok(n == 1)
    }
}

/// A fifo endpoint's next delivery in line as a claim candidate (is a retry, due at, id): its oldest
/// pending one (received_at, then the order stored). While any gateway holds a lease on one of its
/// pending deliveries, the head is due when that lease ends (None if this gateway holds it: it waits
/// for the outcome, not a time).
fn fifo_head(
    tx: &mut postgres::Transaction<'_>,
    endpoint: &str,
    now: i64,
) -> anyhow::Result<Option<(bool, i64, String)>> {
    let busy = tx.query_opt(
        "SELECT MAX(lease_until) FROM deliveries
         WHERE status = 'pending' AND endpoint = $1 AND lease_until >= $2",
        &[&endpoint, &now],
    )?;
    let busy_until: Option<i64> = busy.and_then(|r| r.get(0));
    let head = tx.query_opt(
        "SELECT attempts > 0, COALESCE(next_attempt_at, 0), id FROM deliveries
         WHERE status = 'pending' AND endpoint = $1 ORDER BY created_at, seq LIMIT 1",
        &[&endpoint],
    )?;
    Ok(head.map(|r| {
        let due: i64 = r.get(1);
        (r.get(0), busy_until.map_or(due, |b| due.max(b + 1)), r.get(2))
    }))
}
