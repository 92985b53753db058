//! Finishing an attempt: its row in `attempts`, and the delivery moved on to its next state with its
//! lease given back, in the next group commit. Only the lease's holder moves the delivery on: when
//! this gateway's lease lapsed and another gateway took the delivery over, that one's attempt
//! decides, even once it has finished and given the lease back (this attempt is still recorded;
//! at-least-once means both were sent).

use anyhow::Context;

use super::commit::Work;
use super::{Postgres, opt_text};
use crate::mail::{DeliveryStatus, NextState};
use crate::store::{Attempt, Delivery};
use crate::time::now_ms;

impl Postgres {
    pub(in crate::store) fn finish_attempt(&self, d: &Delivery, a: &Attempt, next: &NextState) -> anyhow::Result<()> {
        let record = AttemptRecord {
            delivery_id: d.id.clone(),
            owner: self.owner.clone(),
            retry_requested_at: d.retry_requested_at,
            step: d.step,
            attempt: a.clone(),
            next: *next,
        };
        self.commit(record).context("recording a delivery attempt")?;
        self.drop_held([&d.id]);
        Ok(())
    }
}

struct AttemptRecord {
    delivery_id: String,
    owner: String,
    retry_requested_at: Option<i64>,
    step: i64,
    attempt: Attempt,
    next: NextState,
}

impl Work for AttemptRecord {
    fn write(&self, tx: &mut postgres::Transaction<'_>) -> anyhow::Result<()> {
        let (r, a) = (self, &self.attempt);
        let (error, body) = (opt_text(a.error.as_deref()), opt_text(a.response_body.as_deref()));
        let Some(row) = tx.query_opt(
            // Before the attempt's row, whose foreign key would take a weaker lock first. Locked
            // already when the batch has more than one (in id order, commit.rs `begin`).
            "SELECT retry_requested_at, lease_owner FROM deliveries WHERE id = $1 FOR NO KEY UPDATE",
            &[&r.delivery_id],
        )?
        else {
            anyhow::bail!("delivery {} does not exist", r.delivery_id);
        };
        let (requested, owner): (Option<i64>, Option<String>) = (row.get(0), row.get(1));
        tx.execute(
            "INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, http_status, error, response_body)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&r.delivery_id, &a.attempt, &a.started_at, &a.duration_ms, &a.http_status, &error, &body],
        )?;
        // No lease of ours (another gateway's, or none: a takeover already recorded its outcome
        // and gave the lease back): the attempt is on record, the delivery is not ours to move.
        if owner.as_deref() != Some(r.owner.as_str()) {
            return Ok(());
        }
        let (status, step, at, keep_request) = if requested != r.retry_requested_at {
            // The CLI asked for another attempt while this one was in flight: honour it.
            (DeliveryStatus::Pending, r.step, requested, requested)
        } else {
            match r.next {
                NextState::Succeeded => (r.next.status(), r.step, None, None),
                NextState::Retry { at, step } => (r.next.status(), step, Some(at), None),
                NextState::Failed { step } => (r.next.status(), step, None, None),
            }
        };
        tx.execute(
            "UPDATE deliveries SET status = $2, step = $3, next_attempt_at = $4, retry_requested_at = $5,
                    attempts = $6, last_status = $7, last_error = $8, updated_at = $9,
                    lease_owner = NULL, lease_until = NULL
             WHERE id = $1",
            &[
                &r.delivery_id,
                &status.as_str(),
                &step,
                &at,
                &keep_request,
                &a.attempt,
                &a.http_status,
                &error,
                &now_ms(),
            ],
        )?;
        Ok(())
    }
    fn is_promise(&self) -> bool {
        false
    }
    fn locks(&self) -> Option<&str> {
        Some(&self.delivery_id)
    }
    /// A fifo endpoint's next in line, or a retry requested meanwhile, may now be any gateway's.
    fn wakes_schedulers(&self) -> bool {
        true
    }
}
